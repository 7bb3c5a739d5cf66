//! Running the child so that it cannot hurt gigo: its own process group, its
//! output streams drained concurrently into bounded tails, a deadline, and
//! nothing it started left running or holding a pipe once it is done.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// How much of each of the child's output streams is kept: its last bytes.
pub(super) const TAIL_BYTES: usize = 64 * 1024;

/// Once the child has exited and its group is killed, how long gigo still
/// waits for its pipes to close: a process that left the group (`setsid`)
/// may hold them open for ever.
pub(super) const PIPE_GRACE: Duration = Duration::from_secs(2);

/// How the child ended.
pub(super) enum Ending {
    Exited(ExitStatus),
    TimedOut,
}

/// A child that has ended, with the ends of its output streams.
pub(super) struct Finished {
    pub ending: Ending,
    pub stdout: Tail,
    pub stderr: Tail,
}

/// The last [`TAIL_BYTES`] of one output stream.
#[derive(Default)]
pub(super) struct Tail {
    bytes: VecDeque<u8>,
    /// Bytes that came before and were dropped.
    dropped: u64,
    /// The stream was still open when gigo stopped reading it.
    pub still_open: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend(chunk);
        let over = self.bytes.len().saturating_sub(TAIL_BYTES);
        if over > 0 {
            self.bytes.drain(..over);
            self.dropped += over as u64;
        }
    }

    /// The kept bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.iter().copied().collect()
    }

    /// The end of the stream for a message: its last `max_lines` lines, at
    /// most `max_chars` characters, `…` in front when something was cut.
    /// `None` when the stream was empty (or only blank).
    pub fn end(&self, max_lines: usize, max_chars: usize) -> Option<String> {
        let bytes = self.bytes();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim_end();
        if text.trim_start().is_empty() {
            return None;
        }
        let by_lines = text
            .rmatch_indices('\n')
            .nth(max_lines.saturating_sub(1))
            .map_or(0, |(i, _)| i + 1);
        let by_chars = text
            .char_indices()
            .rev()
            .nth(max_chars.saturating_sub(1))
            .map_or(0, |(i, _)| i);
        let begin = by_lines.max(by_chars);
        let cut = begin > 0 || self.dropped > 0;
        Some(format!("{}{}", if cut { "…" } else { "" }, &text[begin..]))
    }
}

fn lock(tail: &Mutex<Tail>) -> MutexGuard<'_, Tail> {
    // A drain thread never panics while holding the lock; if one did, its
    // bytes are still the best account there is.
    tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A thread reading one stream to its end, keeping its tail.
struct Drain {
    tail: Arc<Mutex<Tail>>,
    done: mpsc::Receiver<()>,
}

impl Drain {
    fn start(mut stream: impl Read + Send + 'static) -> io::Result<Drain> {
        let tail = Arc::new(Mutex::new(Tail::default()));
        let (tx, done) = mpsc::channel();
        let kept = Arc::clone(&tail);
        std::thread::Builder::new()
            .name("gigo-exec-drain".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => lock(&kept).push(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = tx.send(());
            })?;
        Ok(Drain { tail, done })
    }

    /// The tail once the stream has closed, or at `by`, whichever comes
    /// first. A thread still reading then is left to end with the stream.
    fn finish(self, by: Instant) -> Tail {
        let open = matches!(
            self.done
                .recv_timeout(by.saturating_duration_since(Instant::now())),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        let mut tail = std::mem::take(&mut *lock(&self.tail));
        tail.still_open = open;
        tail
    }
}

/// A started child whose output streams are being drained.
pub(super) struct Running {
    child: Child,
    stdout: Drain,
    stderr: Drain,
}

/// Starts `cmd` with standard input closed, its output streams piped to gigo
/// and drained, in a process group of its own (on Linux it is also killed
/// if gigo dies).
pub(super) fn spawn(cmd: &mut Command) -> io::Result<Running> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    #[cfg(target_os = "linux")]
    die_with_gigo(cmd);
    let mut child = cmd.spawn()?;
    let drains = match (child.stdout.take(), child.stderr.take()) {
        (Some(out), Some(err)) => Drain::start(out).and_then(|o| Ok((o, Drain::start(err)?))),
        _ => Err(io::Error::other("the child's output pipes are missing")),
    };
    match drains {
        Ok((stdout, stderr)) => Ok(Running {
            child,
            stdout,
            stderr,
        }),
        Err(e) => {
            kill(&mut child);
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Outside its terminal's process group the child no longer gets the
/// terminal's Ctrl-C; dying with gigo (SIGKILL when the thread that started
/// it ends) keeps an interrupted gigo from leaving it running.
#[cfg(target_os = "linux")]
fn die_with_gigo(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let gigo = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // gigo died before the prctl took effect: nothing would kill the child.
            if libc::getppid() != gigo {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Whether the child has exited, leaving it unreaped: while it is a zombie
/// its pid, the group's id, cannot be reused, so killing the group after
/// this cannot hit an unrelated process.
#[cfg(target_os = "linux")]
fn has_exited(child: &mut Child) -> io::Result<bool> {
    // SAFETY: an all-zero siginfo_t is valid; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: a plain system call on our own child with a valid out-pointer.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            child.id() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    // SAFETY: waitid filled `info` for a child event (si_pid 0: no event).
    Ok(unsafe { info.si_pid() } != 0)
}

/// Elsewhere the child is reaped here; the group is killed just after.
#[cfg(not(target_os = "linux"))]
fn has_exited(child: &mut Child) -> io::Result<bool> {
    Ok(child.try_wait()?.is_some())
}

/// SIGKILL to the child's whole process group, and to the child itself in
/// case it left the group.
fn kill(child: &mut Child) {
    #[cfg(unix)]
    // SAFETY: a plain system call; the group id is the child's unreaped pid.
    unsafe {
        libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
    }
    let _ = child.kill();
}

impl Running {
    /// Waits for the child to exit, at most `timeout` (`None`: no limit).
    /// Either way every process left in its group is then killed and the
    /// child reaped, and its streams are read until they close, at most
    /// [`PIPE_GRACE`] longer.
    pub(super) fn wait(mut self, timeout: Option<Duration>) -> io::Result<Finished> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let timed_out = loop {
            match has_exited(&mut self.child) {
                Ok(true) => break false,
                Ok(false) if deadline.is_some_and(|d| Instant::now() >= d) => break true,
                Ok(false) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    kill(&mut self.child);
                    let _ = self.child.wait();
                    return Err(e);
                }
            }
        };
        // Nothing the child started outlives the stage or keeps its pipes open.
        kill(&mut self.child);
        let status = self.child.wait()?;
        let by = Instant::now() + PIPE_GRACE;
        Ok(Finished {
            ending: if timed_out {
                Ending::TimedOut
            } else {
                Ending::Exited(status)
            },
            stdout: self.stdout.finish(by),
            stderr: self.stderr.finish(by),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_only_the_last_bytes() {
        let mut t = Tail::default();
        for i in 0..100u8 {
            t.push(&[i; 10_000]);
        }
        assert_eq!(t.bytes().len(), TAIL_BYTES);
        assert_eq!(t.dropped, 1_000_000 - TAIL_BYTES as u64);
        assert!(t.bytes().ends_with(&[99; 10_000]));
        assert_eq!(t.end(20, 3), Some("…ccc".into()));
    }

    #[test]
    fn a_stream_end_is_its_last_lines() {
        let mut t = Tail::default();
        assert_eq!(t.end(2, 100), None);
        t.push(b"one\ntwo\nthree\n\n");
        assert_eq!(t.end(2, 100), Some("…two\nthree".into()));
        assert_eq!(t.end(5, 100), Some("one\ntwo\nthree".into()));
    }
}
