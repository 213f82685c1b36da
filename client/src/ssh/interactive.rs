//! The methods that need a person at a terminal, tried after every key like ssh does:
//! keyboard-interactive (answering the server's prompts) and password. Without a terminal they
//! are skipped, so a script fails with the list of keys it tried instead of hanging on a prompt.
//! Answers are read from /dev/tty without echo (echo only where the server asks for it).

use std::{
    fs::OpenOptions,
    io::{BufRead, BufReader, Write},
};

use russh::client::{AuthResult, Handle, Handler, KeyboardInteractiveAuthResponse};

use super::{terminal, HostSettings, SshError};
use crate::visible::{visible, visible_lines};

/// Password prompts before giving up (ssh's NumberOfPasswordPrompts).
const PASSWORD_ATTEMPTS: usize = 3;

/// Tries keyboard-interactive, then password, if there is a terminal to ask on. Records what was
/// tried in `tried`; true once the server accepted.
pub async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    settings: &HostSettings,
    tried: &mut Vec<String>,
) -> Result<bool, SshError> {
    if settings.batch_mode || !has_terminal() {
        return Ok(false);
    }
    // One host's whole exchange at a time: its prompts and answers never mix with another's.
    let _turn = terminal::turn().await;
    let broken = |err: russh::Error| SshError::Protocol {
        host: settings.hostname.clone(),
        cause: err,
    };
    let user = settings.user.clone();
    if !settings.kbd_interactive_authentication {
        return password(handle, settings, tried).await;
    }
    let mut response = handle
        .authenticate_keyboard_interactive_start(user.clone(), None)
        .await
        .map_err(broken)?;
    let remaining = loop {
        match response {
            KeyboardInteractiveAuthResponse::Success => return Ok(true),
            KeyboardInteractiveAuthResponse::Failure { remaining_methods, .. } => break remaining_methods,
            KeyboardInteractiveAuthResponse::InfoRequest {
                name,
                instructions,
                prompts,
            } => {
                let questions: Vec<(String, bool)> = prompts.into_iter().map(|p| (p.prompt, p.echo)).collect();
                let answers = blocking(move || answer(&name, &instructions, &questions)).await?;
                response = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(broken)?;
            }
        }
    };
    tried.push("keyboard-interactive".into());
    if !remaining.contains(&russh::MethodKind::Password) {
        return Ok(false);
    }
    password(handle, settings, tried).await
}

/// Asks for the password (up to [`PASSWORD_ATTEMPTS`] times) unless PasswordAuthentication is off.
async fn password<H: Handler>(
    handle: &mut Handle<H>,
    settings: &HostSettings,
    tried: &mut Vec<String>,
) -> Result<bool, SshError> {
    if !settings.password_authentication {
        return Ok(false);
    }
    let broken = |err: russh::Error| SshError::Protocol {
        host: settings.hostname.clone(),
        cause: err,
    };
    let user = settings.user.clone();
    for _ in 0..PASSWORD_ATTEMPTS {
        let prompt = format!("{user}@{}'s password: ", settings.hostname);
        let Some(password) = blocking(move || read_secret(&prompt)).await? else {
            break;
        };
        match handle
            .authenticate_password(user.clone(), password)
            .await
            .map_err(broken)?
        {
            AuthResult::Success => return Ok(true),
            AuthResult::Failure { remaining_methods, .. } => {
                tried.push("password".into());
                if !remaining_methods.contains(&russh::MethodKind::Password) {
                    break;
                }
            }
        }
    }
    Ok(false)
}

/// Whether this process can talk to a person: a controlling terminal that opens.
fn has_terminal() -> bool {
    OpenOptions::new().read(true).write(true).open("/dev/tty").is_ok()
}

/// Runs a terminal prompt off the async threads.
async fn blocking<T: Send + 'static>(prompt: impl FnOnce() -> T + Send + 'static) -> Result<T, SshError> {
    tokio::task::spawn_blocking(prompt)
        .await
        .map_err(|err| SshError::Protocol {
            host: "the terminal".into(),
            cause: russh::Error::IO(std::io::Error::other(err)),
        })
}

/// Shows the server's name and instructions, then asks each prompt; all three are the server's
/// text, shown with their control characters made visible so it cannot draw a prompt of its own.
fn answer(name: &str, instructions: &str, questions: &[(String, bool)]) -> Vec<String> {
    if let Ok(mut tty) = OpenOptions::new().write(true).open("/dev/tty") {
        let lines = [visible(name), visible_lines(instructions)];
        for line in lines.iter().filter(|line| !line.is_empty()) {
            let _ = writeln!(tty, "{line}");
        }
    }
    questions
        .iter()
        .map(|(prompt, echo)| {
            let prompt = visible(prompt);
            let answer = if *echo {
                read_line(&prompt)
            } else {
                read_secret(&prompt)
            };
            answer.unwrap_or_default()
        })
        .collect()
}

/// A line typed without echo; `None` without a terminal or for an empty answer.
fn read_secret(prompt: &str) -> Option<String> {
    rpassword::prompt_password(prompt)
        .ok()
        .filter(|answer| !answer.is_empty())
}

/// A line typed with echo.
fn read_line(prompt: &str) -> Option<String> {
    let mut tty = OpenOptions::new().read(true).write(true).open("/dev/tty").ok()?;
    write!(tty, "{prompt}").ok()?;
    tty.flush().ok()?;
    let mut line = String::new();
    BufReader::new(tty).read_line(&mut line).ok()?;
    Some(line.trim_end_matches(['\r', '\n']).to_string())
}
