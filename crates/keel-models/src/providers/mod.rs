//! One module per provider; each converts the normalized request and stream to and from its
//! own wire format, and nothing else.

pub mod openai;
pub mod scripted;
#[cfg(feature = "local")]
pub mod local;
