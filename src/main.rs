//! The `twinmasq` command: dnsmasq's command line, plus our subcommands.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "twinmasq",
    version,
    about = "A dnsmasq-compatible DHCPv4 + DNS server with primary/secondary lease failover",
    // dnsmasq's -h (no-hosts) and -V (alias) are options, not help/version.
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = "\
Subcommands (see `twinmasq SUBCOMMAND --help`):
  twinmasq status [--json] [--check]    the running server's state; --check for keepalived
  twinmasq leases [--json] [--all]      the lease database
  twinmasq failover gen-key             a new failover key
  twinmasq failover partner-down        declare the failover partner down"
)]
struct Cli {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// dnsmasq options, as on dnsmasq's command line (e.g. -k -C /etc/dnsmasq.conf).
    #[arg(allow_hyphen_values = true, trailing_var_arg = true, num_args = 0.., value_name = "DNSMASQ-OPTIONS")]
    options: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The dhcp-script root helper, started by the server itself.
    if args.get(1).and_then(|a| a.to_str()) == Some(twinmasq::script::helper::ARG) {
        let rest: Vec<String> = args[2..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return std::process::ExitCode::from(twinmasq::script::helper::main(&rest));
    }
    if twinmasq::control::cli::is_subcommand(&args) {
        return match twinmasq::control::cli::run(args) {
            Ok(code) => std::process::ExitCode::from(code),
            Err(e) => {
                eprintln!("twinmasq: {e}");
                std::process::ExitCode::from(e.exit_code())
            }
        };
    }
    match twinmasq::control::cli::info_request(&args) {
        Some(twinmasq::control::cli::InfoRequest::Version) => {
            print!("{}", twinmasq::control::cli::version_text());
            return std::process::ExitCode::SUCCESS;
        }
        Some(twinmasq::control::cli::InfoRequest::Help) => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return std::process::ExitCode::SUCCESS;
        }
        None => {}
    }
    // Before anything opens a descriptor of its own or starts the
    // dhcp-script helper: what the starter left open goes, as in dnsmasq.
    twinmasq::service::fds::close_inherited(&[]);
    let cli = Cli::parse_from(args);
    let result = twinmasq::config::load(&cli.options)
        .map_err(twinmasq::server::StartError::from)
        .and_then(|cfg| {
            if cfg.test_only {
                println!("twinmasq: syntax check OK.");
                return Ok(());
            }
            twinmasq::server::run(cfg)
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twinmasq: {e}");
            std::process::ExitCode::from(e.exit_code() as u8)
        }
    }
}
