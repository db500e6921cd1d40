fn main() -> std::process::ExitCode {
    stackbench::cli::main()
}
