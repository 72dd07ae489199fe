fn main() -> std::process::ExitCode {
    scaivault_cli::main()
}
