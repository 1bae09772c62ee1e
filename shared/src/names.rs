//! The one way a fieldless enum names its variants as stored and sent.

/// Gives a fieldless enum its names, each variant named once: `ALL` (in the order listed), `as_str`
/// and `parse` (`None` for anything else). The serde names of these enums are the same strings, and
/// so is their OpenAPI schema (a string, one of the names).
macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: [$ty; [$(stringify!($variant)),+].len()] = [$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }

            pub fn parse(s: &str) -> Option<$ty> {
                match s {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($name),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $ty {}
    };
}

pub(crate) use named;

#[cfg(test)]
mod tests {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Tide {
        Ebb,
        Flood,
    }

    named!(Tide {
        Ebb => "ebb",
        Flood => "flood",
    });

    #[test]
    fn every_name_parses_back_and_nothing_else_does() {
        assert_eq!(Tide::ALL, [Tide::Ebb, Tide::Flood]);
        for t in Tide::ALL {
            assert_eq!(Tide::parse(t.as_str()), Some(t));
        }
        assert_eq!(Tide::parse("slack"), None);
    }
}
