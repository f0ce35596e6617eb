use clap::Parser;

fn main() {
    let cli = sparktrends_ingest::cli::Cli::parse();
    std::process::exit(sparktrends_ingest::app::run(cli));
}
