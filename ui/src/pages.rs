//! One module per page.

pub(crate) mod dependencies;
pub(crate) mod home;
pub(crate) mod login;
pub(crate) mod search;
pub(crate) mod service;
pub(crate) mod sql;
pub(crate) mod trace;
pub(crate) mod versions;
