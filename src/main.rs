//! The `ipmigw` binary: parse the command line, run, exit with the code the
//! library chose (0 ok, 1 usage/config, 2 connection, 3 denied, 4 BMC error).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(ipmigw::cli::main())
}
