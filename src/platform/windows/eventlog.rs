//! The Windows Event Log: botward's source in the Application log, and a
//! tracing layer that writes the operational log there while botward runs
//! as a service.
//!
//! The layer writes WARN and ERROR events, and the INFO events of the
//! server's life (ready, reloaded, stopped, orphaned leases revoked), as
//! one string: the message, then each field as ` key=value`, escaped like
//! terminal output and capped at [`MAX_TEXT`] bytes. botward's tracing
//! events never carry a secret value, so neither does the Event Log.
//!
//! The source's message file is the .NET Framework's
//! `EventLogMessages.dll`, in which every event id's text is the string
//! itself, so botward needs no message resources of its own.

use std::ffi::OsStr;
use std::fmt::{self, Write as _};
use std::io;
use std::ptr::{null, null_mut};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::EventLog::{
    DeregisterEventSource, RegisterEventSourceW, ReportEventW, EVENTLOG_ERROR_TYPE,
    EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE, REPORT_EVENT_TYPE,
};
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegCreateKeyExW, RegDeleteKeyW, RegSetValueExW, HKEY, HKEY_LOCAL_MACHINE,
    KEY_SET_VALUE, REG_DWORD, REG_EXPAND_SZ, REG_OPTION_NON_VOLATILE,
};

use super::ffi::wide;

/// The event source, in the Application log.
pub const SOURCE: &str = "botward";
/// The source's registry key under `HKEY_LOCAL_MACHINE`.
pub const SOURCE_KEY: &str = r"SYSTEM\CurrentControlSet\Services\EventLog\Application\botward";
/// The message file whose every message is its one insertion string.
pub const MESSAGE_FILE: &str =
    r"%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll";
/// Error, warning and information events.
const TYPES_SUPPORTED: u32 = 7;
/// The most bytes of text one event carries.
pub const MAX_TEXT: usize = 8 * 1024;

/// The targets whose INFO events are part of the server's life.
const LIFECYCLE_TARGETS: [&str; 2] = ["botward::app", "botward::broker::reload"];

// === the source ===

/// Registers (or updates) the source `botward` in the Application log.
pub fn register_source() -> io::Result<()> {
    let key = wide(OsStr::new(SOURCE_KEY));
    let mut hkey: HKEY = null_mut();
    // SAFETY: `key` is NUL-terminated; `hkey` is a valid out-pointer and
    // closed below.
    let rc = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            0,
            null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            null(),
            &mut hkey,
            null_mut(),
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    let file = wide(OsStr::new(MESSAGE_FILE));
    let file_bytes: Vec<u8> = file.iter().flat_map(|u| u.to_le_bytes()).collect();
    let types = TYPES_SUPPORTED.to_le_bytes();
    let result = set_value(hkey, "EventMessageFile", REG_EXPAND_SZ, &file_bytes)
        .and_then(|()| set_value(hkey, "TypesSupported", REG_DWORD, &types));
    // SAFETY: `hkey` was opened above and is closed once.
    unsafe { RegCloseKey(hkey) };
    result
}

fn set_value(hkey: HKEY, name: &str, kind: u32, data: &[u8]) -> io::Result<()> {
    let name = wide(OsStr::new(name));
    // SAFETY: `hkey` is open for setting values; `name` is NUL-terminated;
    // `data` holds `data.len()` bytes.
    let rc = unsafe {
        RegSetValueExW(
            hkey,
            name.as_ptr(),
            0,
            kind,
            data.as_ptr(),
            data.len() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    Ok(())
}

/// Removes the source; a source that is not there is not an error.
pub fn remove_source() -> io::Result<()> {
    let key = wide(OsStr::new(SOURCE_KEY));
    // SAFETY: `key` is NUL-terminated.
    let rc = unsafe { RegDeleteKeyW(HKEY_LOCAL_MACHINE, key.as_ptr()) };
    match rc {
        // ERROR_FILE_NOT_FOUND
        0 | 2 => Ok(()),
        rc => Err(io::Error::from_raw_os_error(rc as i32)),
    }
}

// === the layer ===

/// A tracing layer that reports events to the Event Log under [`SOURCE`].
pub struct EventLog {
    handle: HANDLE,
}

// SAFETY: an event source handle may be used from any thread; ReportEventW
// is thread-safe.
unsafe impl Send for EventLog {}
// SAFETY: as above; the handle is only read.
unsafe impl Sync for EventLog {}

impl EventLog {
    /// Opens the source, `None` when the Event Log cannot be reached.
    pub fn open() -> Option<EventLog> {
        let source = wide(OsStr::new(SOURCE));
        // SAFETY: `source` is NUL-terminated; a null server is this host.
        let handle = unsafe { RegisterEventSourceW(null(), source.as_ptr()) };
        (!handle.is_null()).then_some(EventLog { handle })
    }

    fn report(&self, kind: REPORT_EVENT_TYPE, text: &str) {
        let text = wide(OsStr::new(text));
        let strings = [text.as_ptr()];
        // SAFETY: the handle is open; one NUL-terminated string, no data.
        unsafe {
            ReportEventW(
                self.handle,
                kind,
                0,
                event_id(kind),
                null_mut(),
                1,
                0,
                strings.as_ptr(),
                null(),
            )
        };
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // SAFETY: the handle was opened in `open` and is closed once.
        unsafe { DeregisterEventSource(self.handle) };
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for EventLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if let Some(kind) = event_type(event.metadata()) {
            self.report(kind, &render(event));
        }
    }
}

/// The Event Log type for an event, `None` for an event the Event Log does
/// not get.
pub fn event_type(meta: &Metadata<'_>) -> Option<REPORT_EVENT_TYPE> {
    let level = *meta.level();
    if level == Level::ERROR {
        Some(EVENTLOG_ERROR_TYPE)
    } else if level == Level::WARN {
        Some(EVENTLOG_WARNING_TYPE)
    } else if level == Level::INFO && LIFECYCLE_TARGETS.contains(&meta.target()) {
        Some(EVENTLOG_INFORMATION_TYPE)
    } else {
        None
    }
}

/// Event ids by type: 1 information, 2 warning, 3 error, so a filter on
/// the id picks one kind.
fn event_id(kind: REPORT_EVENT_TYPE) -> u32 {
    match kind {
        EVENTLOG_ERROR_TYPE => 3,
        EVENTLOG_WARNING_TYPE => 2,
        _ => 1,
    }
}

/// An event's message and fields as one line of at most [`MAX_TEXT`]
/// bytes, control characters escaped.
pub fn render(event: &Event<'_>) -> String {
    let mut text = Text::default();
    event.record(&mut text);
    let mut line = text.message;
    line.push_str(&text.fields);
    cap(crate::text::escape(&line).into_owned())
}

/// `s` cut to at most [`MAX_TEXT`] bytes at a character boundary, with `…`
/// marking the cut.
pub fn cap(mut s: String) -> String {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Keeps what the Event Log would get.
    struct Capture(Arc<Mutex<Vec<(REPORT_EVENT_TYPE, String)>>>);

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            if let Some(kind) = event_type(event.metadata()) {
                self.0.lock().unwrap().push((kind, render(event)));
            }
        }
    }

    fn captured(f: impl FnOnce()) -> Vec<(REPORT_EVENT_TYPE, String)> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(got.clone()));
        tracing::subscriber::with_default(subscriber, f);
        let v = got.lock().unwrap().clone();
        v
    }

    #[test]
    fn warnings_errors_and_lifecycle_reach_the_event_log() {
        let got = captured(|| {
            tracing::warn!(error = %"refused", path = "C:\\x", "Cannot do it");
            tracing::error!(count = 3, "Broken");
            tracing::info!("Not lifecycle: this module is no lifecycle target");
            tracing::debug!("never");
            tracing::info!(target: "botward::app", listen = %"tcp=127.0.0.1:1", "botward ready");
        });
        assert_eq!(
            got,
            vec![
                (
                    EVENTLOG_WARNING_TYPE,
                    "Cannot do it error=refused path=C:\\x".to_owned()
                ),
                (EVENTLOG_ERROR_TYPE, "Broken count=3".to_owned()),
                (
                    EVENTLOG_INFORMATION_TYPE,
                    "botward ready listen=tcp=127.0.0.1:1".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn event_text_is_escaped_and_capped() {
        let long = "é".repeat(MAX_TEXT);
        let got = captured(|| {
            tracing::warn!(peer = %"evil\r\nforged line\x1b[2J", "Refused");
            tracing::warn!(field = %long, "Long");
        });
        assert_eq!(got[0].1, "Refused peer=evil\\r\\nforged line\\x1b[2J");
        assert!(got[1].1.len() <= MAX_TEXT, "{}", got[1].1.len());
        assert!(got[1].1.starts_with("Long field=éé"));
        assert!(got[1].1.ends_with('…'));
    }

    #[test]
    fn a_real_event_source_takes_an_event() {
        // The source need not be registered for ReportEventW to accept an
        // event (Windows files it under the name it was given).
        let log = EventLog::open().expect("the Event Log");
        log.report(EVENTLOG_INFORMATION_TYPE, "botward unit test event");
    }
}
