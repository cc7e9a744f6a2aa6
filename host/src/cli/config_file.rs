//! `clusterhost run --config node.toml`: every `run` flag as a key of a
//! TOML file (`data_dir = "d1"`, `join = ["10.0.0.1:7401"]`,
//! `bootstrap = true`), turned into flags before clap parses the command
//! line. An environment variable `CLUSTERHOST_<FLAG>` (`CLUSTERHOST_DATA_DIR`)
//! is the third source: a flag on the command line beats its variable,
//! which beats the file's key. An unknown key is refused with its name. The
//! keys are read from the `run` command's own definition, so every flag has
//! one and `config example` lists them all.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

use super::args::Cli;

/// Flags of `run` that have no key: the file itself, and clap's own.
const NOT_KEYS: [&str; 3] = ["config", "help", "version"];

/// One `run` flag, as the file sees it.
struct Flag {
    long: String,
    short: Option<char>,
    takes_value: bool,
}

/// The environment variable that sets the `run` flag `--long`.
pub fn env_name(long: &str) -> String {
    format!("CLUSTERHOST_{}", long.replace('-', "_").to_uppercase())
}

/// The command line's definition, with every `run` flag also read from
/// its environment variable.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("run", |run| {
        run.mut_args(|argument| match argument.get_long() {
            Some(long) if !NOT_KEYS.contains(&long) => {
                // Built once per process, at start-up: leaking the few
                // names is how clap takes them without its `string` feature.
                let name: &'static str = Box::leak(env_name(long).into_boxed_str());
                argument.env(name)
            }
            _ => argument,
        })
    })
}

/// Parse `args` (after [`expand`]): flags, then environment variables.
/// Bad flags print clap's message and exit with code 2.
pub fn parse(args: Vec<OsString>) -> Cli {
    let matches = command().get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

fn run_flags() -> Vec<Flag> {
    let command = Cli::command();
    let Some(run) = command.find_subcommand("run") else {
        return Vec::new();
    };
    run.get_arguments()
        .filter_map(|argument| {
            let long = argument.get_long()?;
            Some(Flag {
                long: long.to_string(),
                short: argument.get_short(),
                takes_value: argument.get_action().takes_values(),
            })
        })
        .collect()
}

/// The command line with `run --config FILE` replaced by the file's keys
/// as flags; any other command line unchanged.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let text: Vec<String> = args
        .iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let Some((path, rest)) = take_config(&text) else {
        return Ok(args);
    };
    let file = std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read the config file {path}: {error}"))?;
    let in_environment = |long: &str| std::env::var_os(env_name(long)).is_some();
    expand_with(&rest, &file, &path, in_environment)
        .map(|expanded| expanded.into_iter().map(OsString::from).collect())
}

/// Split `--config PATH` (or `--config=PATH`) out of a `run` command line.
fn take_config(args: &[String]) -> Option<(String, Vec<String>)> {
    if args.get(1).map(String::as_str) != Some("run") {
        return None;
    }
    let at = args
        .iter()
        .position(|arg| arg == "--config" || arg.starts_with("--config="))?;
    let mut rest = args.to_vec();
    let flag = rest.remove(at);
    let path = match flag.strip_prefix("--config=") {
        Some(path) => path.to_string(),
        None if at < rest.len() => rest.remove(at),
        None => return None,
    };
    Some((path, rest))
}

/// `args` (a `run` command line without `--config`) with the keys of
/// `file` added as flags, except those `args` already gives and those
/// `in_environment` says an environment variable sets.
pub fn expand_with(
    args: &[String],
    file: &str,
    path: &str,
    in_environment: impl Fn(&str) -> bool,
) -> Result<Vec<String>, String> {
    let table: toml::Table = file
        .parse()
        .map_err(|error| format!("{path} is not valid TOML: {error}"))?;
    let flags = run_flags();
    let given = given_flags(args, &flags);
    let mut from_file = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let flag = flags
            .iter()
            .find(|flag| flag.long == long && !NOT_KEYS.contains(&flag.long.as_str()))
            .ok_or_else(|| {
                format!(
                    "{path}: unknown key `{key}`: not a `run` flag (see `clusterhost config example`)"
                )
            })?;
        if given.contains(&flag.long) || in_environment(&flag.long) {
            continue;
        }
        from_file.extend(flag_args(flag, key, value, path)?);
    }
    let mut expanded = args.to_vec();
    // After `clusterhost run`, before the command line's own flags.
    let insert_at = expanded.len().min(2);
    expanded.splice(insert_at..insert_at, from_file);
    Ok(expanded)
}

/// The long names of the flags on the command line.
fn given_flags(args: &[String], flags: &[Flag]) -> Vec<String> {
    args.iter()
        .skip(2)
        .filter_map(|arg| {
            if let Some(long) = arg.strip_prefix("--") {
                return Some(long.split('=').next().unwrap_or(long).to_string());
            }
            let short = arg.strip_prefix('-')?.chars().next()?;
            flags
                .iter()
                .find(|flag| flag.short == Some(short))
                .map(|flag| flag.long.clone())
        })
        .collect()
}

/// `value` of `key` as flags.
fn flag_args(
    flag: &Flag,
    key: &str,
    value: &toml::Value,
    path: &str,
) -> Result<Vec<String>, String> {
    let switch = format!("--{}", flag.long);
    let scalar = |value: &toml::Value| match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        _ => Err(format!("{path}: `{key}` must be a string or a number")),
    };
    match (flag.takes_value, value) {
        (false, toml::Value::Boolean(true)) => Ok(vec![switch]),
        (false, toml::Value::Boolean(false)) => Ok(Vec::new()),
        (false, _) => Err(format!("{path}: `{key}` must be true or false")),
        (true, toml::Value::Array(values)) => values
            .iter()
            .map(|value| scalar(value).map(|text| [switch.clone(), text]))
            .collect::<Result<Vec<_>, _>>()
            .map(|pairs| pairs.concat()),
        (true, value) => Ok(vec![switch, scalar(value)?]),
    }
}

/// A commented file with every key and its default (`config example`).
pub fn example() -> String {
    let command = Cli::command();
    let mut text = String::from(
        "# clusterhost node configuration: `clusterhost run --config node.toml`.\n\
         # Every key is a `run` flag (dashes become underscores); a flag on the\n\
         # command line, or its variable CLUSTERHOST_<KEY> (CLUSTERHOST_DATA_DIR),\n\
         # overrides its key. Uncomment what you set.\n",
    );
    let Some(run) = command.find_subcommand("run") else {
        return text;
    };
    for argument in run.get_arguments() {
        let Some(long) = argument.get_long() else {
            continue;
        };
        if NOT_KEYS.contains(&long) {
            continue;
        }
        let help = argument
            .get_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        text.push('\n');
        for line in help.lines() {
            text.push_str(&format!("# {line}\n"));
        }
        let key = long.replace('-', "_");
        let defaults: Vec<String> = argument
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let many = matches!(argument.get_action(), clap::ArgAction::Append);
        let value = match (argument.get_action().takes_values(), defaults.first()) {
            (false, _) => "false".to_string(),
            (true, _) if many => "[]".to_string(),
            (true, Some(default)) if default.parse::<f64>().is_ok() => default.clone(),
            (true, Some(default)) => format!("{default:?}"),
            (true, None) => "\"\"".to_string(),
        };
        text.push_str(&format!("# {key} = {value}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn keys_become_flags_and_flags_on_the_command_line_win() {
        let file = "data_dir = \"d1\"\nbootstrap = true\njoin = [\"a:1\", \"b:2\"]\nnode_id = 5\nlisten = \"127.0.0.1:9\"\n";
        let expanded = expand_with(
            &args("clusterhost run --listen 127.0.0.1:1"),
            file,
            "n.toml",
            |_| false,
        )
        .expect("ok");
        let parsed = Cli::try_parse_from(&expanded).expect("clap parses it");
        let super::super::args::Command::Run(run) = parsed.command else {
            panic!("not run");
        };
        assert_eq!(run.data_dir, std::path::PathBuf::from("d1"));
        assert!(run.bootstrap);
        assert_eq!(run.join, vec!["a:1".to_string(), "b:2".to_string()]);
        assert_eq!(run.node_id, Some(5));
        assert_eq!(
            run.listen.to_string(),
            "127.0.0.1:1",
            "the flag overrides the key"
        );
    }

    #[test]
    fn a_key_set_by_an_environment_variable_is_left_to_it() {
        let expanded = expand_with(
            &args("clusterhost run"),
            "voter_cap = 3\ncluster_name = \"c\"\n",
            "n.toml",
            |long| long == "voter-cap",
        )
        .expect("ok");
        assert!(
            !expanded.contains(&"--voter-cap".to_string()),
            "{expanded:?}"
        );
        assert!(
            expanded.contains(&"--cluster-name".to_string()),
            "{expanded:?}"
        );
        assert_eq!(env_name("data-dir"), "CLUSTERHOST_DATA_DIR");
        command().debug_assert();
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_by_name() {
        let error = expand_with(
            &args("clusterhost run"),
            "colour = \"blue\"",
            "n.toml",
            |_| false,
        )
        .expect_err("refused");
        assert!(error.contains("unknown key `colour`"), "{error}");
        let error = expand_with(
            &args("clusterhost run"),
            "bootstrap = \"yes\"",
            "n.toml",
            |_| false,
        )
        .expect_err("refused");
        assert!(
            error.contains("`bootstrap` must be true or false"),
            "{error}"
        );
        assert!(
            expand_with(&args("clusterhost run"), "config = \"x\"", "n.toml", |_| {
                false
            })
            .is_err()
        );
        assert!(expand_with(&args("clusterhost run"), "not toml [", "n.toml", |_| false).is_err());
    }

    #[test]
    fn the_example_lists_every_flag_and_uncommented_it_is_accepted() {
        let example = example();
        for flag in run_flags() {
            if !NOT_KEYS.contains(&flag.long.as_str()) {
                let key = flag.long.replace('-', "_");
                assert!(example.contains(&format!("# {key} = ")), "{key} missing");
            }
        }
        // Keys without a default (optional flags) stay out: "" is no value.
        let uncommented: String = example
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| line.contains(" = ") && !line.ends_with("= \"\""))
            .map(|line| format!("{line}\n"))
            .collect();
        let expanded = expand_with(
            &args("clusterhost run"),
            &uncommented,
            "example.toml",
            |_| false,
        )
        .expect("accepted");
        Cli::try_parse_from(&expanded).expect("the defaults parse as flags");
    }

    #[test]
    fn the_deploy_example_is_a_valid_config_file() {
        let file = include_str!("../../../deploy/node.toml");
        let expanded = expand_with(&args("clusterhost run"), file, "deploy/node.toml", |_| {
            false
        })
        .expect("valid");
        Cli::try_parse_from(&expanded).expect("its values parse as flags");
    }

    #[test]
    fn other_commands_and_runs_without_config_are_left_alone() {
        assert_eq!(take_config(&args("clusterhost status --config x")), None);
        assert_eq!(take_config(&args("clusterhost run --listen a")), None);
        assert_eq!(
            take_config(&args("clusterhost run --config=n.toml --listen a")),
            Some(("n.toml".to_string(), args("clusterhost run --listen a")))
        );
    }
}
