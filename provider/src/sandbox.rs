//! Templates rendered in a child process with a memory limit.
//!
//! A template is tenant-written code. Fuel bounds how many instructions it runs
//! and a capped sink bounds what it writes, but the engine builds intermediate
//! values (`"x" * 100000000`, a string doubled in a loop, a join of a huge list)
//! that no in-process check can stop before they are allocated. So the provider
//! renders templates in a short-lived copy of its own binary
//! (`courier-provider __render-templates`), which first caps its own data
//! segment (`RLIMIT_DATA`), CPU time and core dumps and then reads the objects and
//! templates from stdin and writes each file to stdout. A template that needs more
//! memory ends that child alone; the provider reports the template by index and
//! path, and goes on serving. At most a fixed number of children run at once, so
//! the memory they can use together is bounded too.
//!
//! The wire between the two is length-prefixed frames over pipes; secrets never
//! touch a file or a command line, and the child's environment is empty.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Semaphore;

use crate::secret::SecretBytes;
use crate::template::{self, MAX_TOTAL_OUTPUT_BYTES, TemplateError, TemplateSpec};

/// The argument that makes the binary a template renderer.
pub const CHILD_ARG: &str = "__render-templates";

/// Default data-segment limit of one renderer, in bytes.
pub const DEFAULT_MEMORY_LIMIT: u64 = 32 * 1024 * 1024;
/// Default number of renderers at once.
pub const DEFAULT_CONCURRENCY: usize = 1;
/// CPU seconds a renderer may use (fuel stops loops long before).
const CPU_SECONDS: u64 = 10;
/// Wall time a renderer may take.
const WALL_TIME: Duration = Duration::from_secs(15);
/// Largest request the child reads: the driver takes at most 4 MiB of files, and
/// templates are at most 100 x 64 KiB.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Largest reply the parent reads: the rendered files plus framing and errors.
const MAX_REPLY_BYTES: usize = MAX_TOTAL_OUTPUT_BYTES + 1024 * 1024;

const TAG_FILE: u8 = 0;
const TAG_ERROR: u8 = 1;

/// Runs template renderers.
#[derive(Debug)]
pub struct Sandbox {
    exe: PathBuf,
    memory_limit: u64,
    permits: Semaphore,
}

impl Sandbox {
    /// Renderers started from `exe` (normally the provider's own binary).
    #[must_use]
    pub fn new(exe: PathBuf, memory_limit: u64, concurrency: usize) -> Self {
        Self { exe, memory_limit, permits: Semaphore::new(concurrency.max(1)) }
    }

    /// Renders `templates` over `objects` in a child process.
    pub async fn render(
        &self,
        templates: &[TemplateSpec],
        objects: &[(String, &SecretBytes)],
    ) -> Result<Vec<SecretBytes>, TemplateError> {
        if templates.is_empty() {
            return Ok(Vec::new());
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return Err(failure(&templates[0], "the template renderer is shut down".to_owned()));
        };
        let request = encode_request(templates, objects);
        let mut child = tokio::process::Command::new(&self.exe)
            .arg(CHILD_ARG)
            .arg(self.memory_limit.to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failure(&templates[0], format!("cannot start the template renderer: {}", e.kind())))?;
        let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(failure(&templates[0], "the template renderer has no pipes".to_owned()));
        };
        let exchange = async {
            // The child reads everything before it writes, so writing first cannot
            // deadlock; a child that dies early makes the write fail, which the exit
            // status below explains.
            let _ = stdin.write_all(&request).await;
            drop(stdin);
            let mut reply = Vec::new();
            let read = (&mut stdout).take(MAX_REPLY_BYTES as u64 + 1).read_to_end(&mut reply).await;
            let status = child.wait().await;
            (reply, read.is_ok(), status)
        };
        let (reply, read_ok, status) = match tokio::time::timeout(WALL_TIME, exchange).await {
            Ok(done) => done,
            Err(_) => return Err(failure(&templates[0], format!("the templates did not finish within {WALL_TIME:?}"))),
        };
        let reply = zeroize::Zeroizing::new(reply);
        let mut outputs = Vec::with_capacity(templates.len());
        let mut frames = Frames { bytes: &reply };
        for t in templates {
            match frames.next() {
                Some((TAG_FILE, bytes)) => outputs.push(SecretBytes::new(bytes.to_vec())),
                Some((TAG_ERROR, bytes)) => return Err(decode_error(t, bytes)),
                _ => {
                    // The child stopped before finishing this template.
                    let why = match status {
                        Ok(s) if s.success() && read_ok => "the template renderer gave no result".to_owned(),
                        Ok(s) if s.code().is_none() => format!(
                            "the template needs more than {} MiB of memory or {CPU_SECONDS} s of CPU \
                             (the renderer was stopped); build smaller values",
                            self.memory_limit / (1024 * 1024)
                        ),
                        Ok(s) => format!("the template renderer failed (exit status {s})"),
                        Err(e) => format!("the template renderer failed: {}", e.kind()),
                    };
                    return Err(failure(t, why));
                }
            }
        }
        Ok(outputs)
    }
}

fn failure(t: &TemplateSpec, problem: String) -> TemplateError {
    TemplateError { index: t.index, path: t.path.as_str().to_owned(), line: None, problem }
}

fn decode_error(t: &TemplateSpec, bytes: &[u8]) -> TemplateError {
    let mut frames = Frames { bytes };
    let line = frames.next().and_then(|(_, l)| std::str::from_utf8(l).ok()?.parse().ok());
    let problem = frames
        .next()
        .map_or_else(|| "the template failed".to_owned(), |(_, p)| String::from_utf8_lossy(p).into_owned());
    TemplateError { index: t.index, path: t.path.as_str().to_owned(), line, problem }
}

fn put(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Length-prefixed frames: a tag byte, a little-endian u64 length, the bytes.
struct Frames<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for Frames<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&tag, rest) = self.bytes.split_first()?;
        let len: [u8; 8] = rest.get(..8)?.try_into().ok()?;
        let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
        let body = rest.get(8..8usize.checked_add(len)?)?;
        self.bytes = &rest[8 + len..];
        Some((tag, body))
    }
}

fn encode_request(templates: &[TemplateSpec], objects: &[(String, &SecretBytes)]) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::new());
    let size = objects.iter().map(|(n, c)| n.len() + c.len() + 18).sum::<usize>()
        + templates.iter().map(|t| t.source.len() + t.path.as_str().len() + 40).sum::<usize>()
        + 18;
    out.reserve_exact(size);
    put(&mut out, b'o', &(objects.len() as u64).to_le_bytes());
    for (name, content) in objects {
        put(&mut out, b'n', name.as_bytes());
        put(&mut out, b'c', content.expose_secret());
    }
    put(&mut out, b't', &(templates.len() as u64).to_le_bytes());
    for t in templates {
        put(&mut out, b'i', &(t.index as u64).to_le_bytes());
        put(&mut out, b'p', t.path.as_str().as_bytes());
        put(&mut out, b's', t.source.as_bytes());
    }
    out
}

/// The child's side: limits itself, renders, writes the results. Returns the
/// process exit code.
#[must_use]
pub fn child_main(memory_limit: Option<&str>) -> i32 {
    use nix::sys::resource::{Resource, setrlimit};
    let memory_limit = memory_limit.and_then(|m| m.parse::<u64>().ok()).unwrap_or(DEFAULT_MEMORY_LIMIT);
    // No core file with secrets in it, and nothing another process of this user
    // may attach to.
    let limited = setrlimit(Resource::RLIMIT_CORE, 0, 0).is_ok()
        && nix::sys::prctl::set_dumpable(false).is_ok()
        && setrlimit(Resource::RLIMIT_CPU, CPU_SECONDS, CPU_SECONDS + 1).is_ok()
        && setrlimit(Resource::RLIMIT_FSIZE, 0, 0).is_ok()
        && setrlimit(Resource::RLIMIT_DATA, memory_limit, memory_limit).is_ok();
    if !limited {
        return 3;
    }
    let mut request = zeroize::Zeroizing::new(Vec::new());
    if std::io::stdin().take(MAX_REQUEST_BYTES as u64).read_to_end(&mut request).is_err() {
        return 4;
    }
    let Some((templates, owned)) = decode_request(&request) else {
        return 5;
    };
    let objects: Vec<(String, &SecretBytes)> = owned.iter().map(|(n, c)| (n.clone(), c)).collect();
    let mut renderer = template::Renderer::new(&objects);
    let mut stdout = std::io::stdout().lock();
    for t in &templates {
        let mut frame = zeroize::Zeroizing::new(Vec::new());
        match renderer.render(t) {
            Ok(bytes) => put(&mut frame, TAG_FILE, bytes.expose_secret()),
            Err(e) => {
                let mut body = Vec::new();
                put(&mut body, b'l', e.line.map(|l| l.to_string()).unwrap_or_default().as_bytes());
                put(&mut body, b'p', e.problem.as_bytes());
                put(&mut frame, TAG_ERROR, &body);
                let _ = stdout.write_all(&frame);
                let _ = stdout.flush();
                return 0;
            }
        }
        if stdout.write_all(&frame).is_err() {
            return 6;
        }
    }
    if stdout.flush().is_err() { 6 } else { 0 }
}

type Decoded = (Vec<TemplateSpec>, Vec<(String, SecretBytes)>);

fn decode_request(bytes: &[u8]) -> Option<Decoded> {
    let mut frames = Frames { bytes };
    let count = |f: &mut Frames<'_>| -> Option<usize> {
        let (_, b) = f.next()?;
        usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok()
    };
    let n_objects = count(&mut frames)?;
    let mut objects = Vec::with_capacity(n_objects.min(1024));
    for _ in 0..n_objects {
        let name = std::str::from_utf8(frames.next()?.1).ok()?.to_owned();
        let content = SecretBytes::new(frames.next()?.1.to_vec());
        objects.push((name, content));
    }
    let n_templates = count(&mut frames)?;
    let mut templates = Vec::with_capacity(n_templates.min(1024));
    for _ in 0..n_templates {
        let index = count(&mut frames)?;
        let path = crate::object_path::ObjectPath::parse(std::str::from_utf8(frames.next()?.1).ok()?).ok()?;
        let source = std::str::from_utf8(frames.next()?.1).ok()?.to_owned();
        templates.push(TemplateSpec { index, path, source, mode: None });
    }
    Some((templates, objects))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_path::ObjectPath;

    #[test]
    fn requests_round_trip() {
        let spec = TemplateSpec { index: 3, path: ObjectPath::parse("a/b.env").expect("p"), source: "{{ x }}".into(), mode: Some(0o600) };
        let value = SecretBytes::new(b"v\x00\xff".to_vec());
        let encoded = encode_request(std::slice::from_ref(&spec), &[("db".to_owned(), &value)]);
        let (templates, objects) = decode_request(&encoded).expect("decodes");
        assert_eq!(templates.len(), 1);
        assert_eq!((templates[0].index, templates[0].path.as_str(), templates[0].source.as_str()), (3, "a/b.env", "{{ x }}"));
        assert_eq!(objects[0].0, "db");
        assert_eq!(objects[0].1.expose_secret(), value.expose_secret());
        assert!(decode_request(&encoded[..encoded.len() - 1]).is_none(), "a truncated request is refused");
    }

    #[test]
    fn frames_stop_at_truncation() {
        let mut out = Vec::new();
        put(&mut out, TAG_FILE, b"abc");
        put(&mut out, TAG_ERROR, b"x");
        let frames: Vec<_> = Frames { bytes: &out[..out.len() - 1] }.collect();
        assert_eq!(frames, vec![(TAG_FILE, &b"abc"[..])]);
        let huge_len = [TAG_FILE, 255, 255, 255, 255, 255, 255, 255, 255];
        assert_eq!(Frames { bytes: &huge_len }.next(), None);
    }
}
