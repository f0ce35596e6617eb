use clap::Parser;

fn main() {
    let cli = sparktrends_alerter::cli::Cli::parse();
    std::process::exit(sparktrends_alerter::app::run(cli));
}
