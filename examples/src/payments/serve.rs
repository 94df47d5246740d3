//! The request-head and body limits of the payments service and the serving loop itself
//! (header read timeout, connection limit, graceful shutdown) live in
//! [`palisade_examples::serve`].

pub use palisade_examples::serve::{ServeLimits, check_head, read_body_within, serve};
