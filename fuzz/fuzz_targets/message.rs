//! Fuzz target: decoding a frame body as each top-level message type, as the agent and the client
//! do, on a thread with the stack a tokio worker has (2 MiB), where the daemon decodes.
//!
//! Whatever decodes must encode again and decode to the same value, byte for byte the second
//! time (the codec has one form for each message), and must never panic or overflow the stack.

#![no_main]

use std::{
    fmt::Debug,
    sync::{mpsc, LazyLock, Mutex},
};

use libfuzzer_sys::fuzz_target;
use remora_wire::{decode, encode, AgentFrame, ClientFrame, FrameId};
use serde::{de::DeserializeOwned, Serialize};

/// tokio's default worker thread stack: the daemon decodes every frame on one.
const WORKER_STACK: usize = 2 * 1024 * 1024;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(body: &[u8]) -> Option<T> {
    let value: T = decode(body).ok()?;
    let mut first = Vec::new();
    encode(&value, &mut first).expect("a decoded message encodes");
    let again: T = decode(&first[4..]).expect("an encoded message decodes");
    assert_eq!(again, value, "decode(encode(m)) == m");
    let mut second = Vec::new();
    encode(&again, &mut second).expect("a decoded message encodes");
    assert_eq!(first, second, "one encoding per message");
    Some(value)
}

fn check(body: &[u8]) {
    if let Some(frame) = round_trip::<ClientFrame>(body) {
        // The agent answers an undecodable body by its id; a decodable one must agree on it.
        if let Ok(id) = decode::<FrameId>(body) {
            assert_eq!(id.id, frame.id);
        }
    }
    round_trip::<AgentFrame>(body);
    round_trip::<FrameId>(body);
}

/// A long-lived decoding thread (spawning one per input would cost more than the decoding).
struct Worker {
    inputs: mpsc::SyncSender<Vec<u8>>,
    done: mpsc::Receiver<()>,
}

static WORKER: LazyLock<Mutex<Worker>> = LazyLock::new(|| {
    let (inputs, bodies) = mpsc::sync_channel::<Vec<u8>>(0);
    let (finished, done) = mpsc::sync_channel(0);
    std::thread::Builder::new()
        .name("decoder".into())
        .stack_size(WORKER_STACK)
        .spawn(move || {
            // A panic here aborts the process (libfuzzer-sys's hook), so libFuzzer sees the crash.
            for body in bodies {
                check(&body);
                finished.send(()).expect("fuzzer waiting");
            }
        })
        .expect("spawn the decoding thread");
    Mutex::new(Worker { inputs, done })
});

fuzz_target!(|body: &[u8]| {
    let worker = WORKER.lock().expect("one fuzzer thread");
    worker.inputs.send(body.to_vec()).expect("decoder alive");
    worker.done.recv().expect("decoder finished");
});
