fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(monitor::cli::main())
}
