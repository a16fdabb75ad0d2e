//! Reporters: KTAP v1 on stdout as cases finish, and the result files of a run.

pub mod json;
pub mod ktap;
