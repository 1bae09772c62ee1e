//! One path and the methods it takes, registered together: [`Endpoint`] builds the actix resource and
//! answers any other method with 405 `method_not_allowed`, its `Allow` header listing the methods
//! the path takes (RFC 9110 section 15.5.6), in the JSON envelope like every other refusal.
//!
//! Being the one place paths and methods are registered, it is also where the table of them is read:
//! [`recorded`] runs a `configure` function and returns every (method, path) its endpoints took,
//! which the OpenAPI agreement test compares with the document.

use crate::error::AppError;
use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, HttpRequest, Resource, Responder};
use std::cell::RefCell;

thread_local! {
    /// The endpoints [`Endpoint::done`] finished while [`recorded`] runs on this thread.
    static RECORDING: RefCell<Option<Vec<(Method, String)>>> = const { RefCell::new(None) };
}

/// Runs `configure` (which registers its endpoints into a throwaway app) and returns every
/// (method, path) the endpoints it built take, in registration order. Paths are as given to
/// [`Endpoint::new`], relative to the scope they are registered in.
pub fn recorded(configure: impl FnOnce(&mut web::ServiceConfig)) -> Vec<(Method, String)> {
    let previous = RECORDING.with(|r| r.replace(Some(Vec::new())));
    let _app = actix_web::App::new().configure(configure);
    RECORDING.with(|r| r.replace(previous)).unwrap_or_default()
}

/// A path being registered: add its methods, then [`Endpoint::done`].
pub struct Endpoint {
    path: String,
    resource: Resource,
    allow: Vec<Method>,
}

impl Endpoint {
    pub fn new(path: &str) -> Endpoint {
        Endpoint {
            path: path.to_owned(),
            resource: web::resource(path),
            allow: Vec::new(),
        }
    }

    /// Answers `method` with `handler`.
    pub fn on<F, Args>(mut self, method: Method, handler: F) -> Endpoint
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.resource = self.resource.route(web::method(method.clone()).to(handler));
        self.allow.push(method);
        self
    }

    pub fn get<F, Args>(self, handler: F) -> Endpoint
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::GET, handler)
    }

    pub fn post<F, Args>(self, handler: F) -> Endpoint
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::POST, handler)
    }

    pub fn patch<F, Args>(self, handler: F) -> Endpoint
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::PATCH, handler)
    }

    pub fn delete<F, Args>(self, handler: F) -> Endpoint
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::DELETE, handler)
    }

    /// The resource, with every other method refused.
    pub fn done(self) -> Resource {
        RECORDING.with(|r| {
            if let Some(table) = r.borrow_mut().as_mut() {
                table.extend(self.allow.iter().map(|m| (m.clone(), self.path.clone())));
            }
        });
        let allow = self
            .allow
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        self.resource
            .default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move {
                    Err::<actix_web::HttpResponse, _>(AppError::MethodNotAllowed {
                        method: req.method().to_string(),
                        allow,
                    })
                }
            }))
    }
}
