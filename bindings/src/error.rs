//! The one error type that crosses the FFI, mapped once from the client core's [`ClientError`].
//!
//! Every variant carries a message fit to show in English and in Chinese, and whether trying
//! again later may succeed, so that an app decides what to do from the variant alone.

use riverchief_client::ClientError;

#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CoreError {
    /// Refused on the device before anything was written; `field` names what is wrong.
    #[error("{detail}")]
    Invalid {
        field: String,
        detail: String,
        detail_zh: String,
        retryable: bool,
    },
    /// No account on this device (log in first).
    #[error("{detail}")]
    NotLoggedIn {
        detail: String,
        detail_zh: String,
        retryable: bool,
    },
    /// The server refused this device's token (revoked, or the account switched off): log in again.
    #[error("{detail}")]
    DeviceRefused {
        detail: String,
        detail_zh: String,
        retryable: bool,
    },
    /// The server could not be reached, or stopped answering.
    #[error("{detail}")]
    Network {
        detail: String,
        detail_zh: String,
        retryable: bool,
    },
    /// The server answered with an error for the whole request.
    #[error("{detail}")]
    Server {
        status: u16,
        code: String,
        detail: String,
        detail_zh: String,
        retryable: bool,
    },
    /// Another sync is running on this data directory.
    #[error("{detail}")]
    Busy {
        detail: String,
        detail_zh: String,
        retryable: bool,
    },
    /// The device's store or a file.
    #[error("{detail}")]
    Local {
        detail: String,
        detail_zh: String,
        retryable: bool,
    },
}

impl CoreError {
    pub(crate) fn invalid(
        field: &str,
        detail: impl Into<String>,
        detail_zh: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            detail: detail.into(),
            detail_zh: detail_zh.into(),
            retryable: false,
        }
    }

    pub(crate) fn local(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::Local {
            detail_zh: format!("本机存储出错：{detail}"),
            detail,
            retryable: false,
        }
    }

    /// Whether trying the same thing again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Invalid { retryable, .. }
            | Self::NotLoggedIn { retryable, .. }
            | Self::DeviceRefused { retryable, .. }
            | Self::Network { retryable, .. }
            | Self::Server { retryable, .. }
            | Self::Busy { retryable, .. }
            | Self::Local { retryable, .. } => *retryable,
        }
    }

    /// The English and Chinese messages.
    pub(crate) fn texts(&self) -> (String, String) {
        match self {
            Self::Invalid {
                detail, detail_zh, ..
            }
            | Self::NotLoggedIn {
                detail, detail_zh, ..
            }
            | Self::DeviceRefused {
                detail, detail_zh, ..
            }
            | Self::Network {
                detail, detail_zh, ..
            }
            | Self::Server {
                detail, detail_zh, ..
            }
            | Self::Busy {
                detail, detail_zh, ..
            }
            | Self::Local {
                detail, detail_zh, ..
            } => (detail.clone(), detail_zh.clone()),
        }
    }
}

impl From<ClientError> for CoreError {
    fn from(e: ClientError) -> Self {
        let detail = e.to_string();
        let retryable = e.is_transient();
        if e.is_unauthorized() {
            return match e.status() {
                Some(_) => Self::DeviceRefused {
                    detail_zh: "服务器不再接受本设备的登录（已注销或账号已停用），请重新登录"
                        .into(),
                    detail,
                    retryable: false,
                },
                None => Self::NotLoggedIn {
                    detail: "not logged in: log in first".into(),
                    detail_zh: "尚未登录，请先登录".into(),
                    retryable: false,
                },
            };
        }
        if e.is_unreachable() {
            return Self::Network {
                detail_zh: format!("无法连接服务器（无信号或服务器未响应），记录已保存在本机，稍后自动重试：{detail}"),
                detail,
                retryable: true,
            };
        }
        match &e {
            ClientError::Validation(field) => Self::Invalid {
                field: field.field.clone(),
                detail_zh: format!("输入有误（{}）：{}", field.field, field.message),
                detail,
                retryable: false,
            },
            ClientError::NotAnImage { .. } => Self::invalid(
                "photo_paths",
                detail,
                "不是照片（只接受 JPEG、PNG、WebP、HEIC、HEIF）",
            ),
            ClientError::PhotoTooLarge { size, max, .. } => Self::invalid(
                "photo_paths",
                detail,
                format!("照片太大：{size} 字节，最多 {max} 字节"),
            ),
            ClientError::UnknownPatrol(_) => Self::invalid("patrol_id", detail, "本机没有这次巡查"),
            ClientError::PatrolFinished(_) => {
                Self::invalid("patrol_id", detail, "这次巡查已经结束")
            }
            ClientError::PatrolRejected { message, .. } => Self::invalid(
                "patrol_id",
                detail.clone(),
                format!("这次巡查被服务器拒绝：{message}"),
            ),
            ClientError::UnknownSegment(code) => Self::invalid(
                "segment",
                detail.clone(),
                format!("本机没有堤段 {code}（请先同步）"),
            ),
            ClientError::BadServerUrl { .. } => {
                Self::invalid("server_url", detail, "服务器地址无效")
            }
            // An app's core has no server before its first login.
            ClientError::NoServer => Self::NotLoggedIn {
                detail: "not logged in: log in first".into(),
                detail_zh: "尚未登录，请先登录".into(),
                retryable: false,
            },
            ClientError::UnsentWorkOfAnother { user, pending, .. } => Self::invalid(
                "username",
                detail.clone(),
                format!("{user} 还有 {pending} 条记录未发送：请先以 {user} 登录并同步"),
            ),
            ClientError::SyncInProgress => Self::Busy {
                detail,
                detail_zh: "本机已有一次同步在进行".into(),
                retryable: true,
            },
            ClientError::Server { status, body } => Self::Server {
                status: *status,
                code: body.code.clone(),
                detail_zh: format!("服务器拒绝了请求（{status}）：{}", body.message),
                detail,
                retryable,
            },
            ClientError::GaveUp { source, .. } if source.status().is_some() => {
                let status = source.status().unwrap_or_default();
                Self::Server {
                    status,
                    code: match source.as_ref() {
                        ClientError::Server { body, .. } => body.code.clone(),
                        _ => String::new(),
                    },
                    detail_zh: format!("服务器多次出错（{status}），稍后再试"),
                    detail,
                    retryable,
                }
            }
            ClientError::Http(_) | ClientError::Stalled(_) | ClientError::GaveUp { .. } => {
                Self::Network {
                    detail_zh: format!("网络出错，稍后自动重试：{detail}"),
                    detail,
                    retryable: true,
                }
            }
            ClientError::Protocol(_) => Self::Server {
                status: 0,
                code: "protocol".into(),
                detail_zh: "服务器的应答无法识别".into(),
                detail,
                retryable: true,
            },
            ClientError::Io(_)
            | ClientError::File { .. }
            | ClientError::Db(_)
            | ClientError::Json(_)
            | ClientError::SchemaTooNew { .. }
            | ClientError::BadGpx { .. }
            | ClientError::Internal(_)
            | ClientError::NotLoggedIn => Self::local(detail),
        }
    }
}

impl From<riverchief_shared::FieldError> for CoreError {
    fn from(e: riverchief_shared::FieldError) -> Self {
        ClientError::from(e).into()
    }
}
