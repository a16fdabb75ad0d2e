//! YAML suites: the typed model ([`model`]) and loading it with located errors ([`load`]).

pub mod gate;
pub mod load;
pub mod model;
pub mod mutate;
pub mod per_kernel;
pub mod spec;

pub use gate::{
    case_skip_reason, config_gaps, config_gaps_message, implied_config, kernel_version, skip_reason, ConfigGap,
    KernelVersion,
};
pub use load::{check_modules, check_suite_file, load_suite, parse_suite, resolve_suite_args, SuiteError};
pub use model::*;
