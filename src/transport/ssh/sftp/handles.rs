//! The forecast of the handle the SFTP server returns for the next OPEN, which lets a read
//! send its READ and CLOSE requests in the same burst as the OPEN instead of one round trip
//! later.
//!
//! OpenSSH's sftp-server (sftp-server.c, `handle_new` and `handle_unused`, unchanged from
//! OpenSSH 5 to 9.x) encodes a handle as a 4-byte big-endian index, numbers the first one 0,
//! and reuses the most recently closed index first. So while no handle is open, the next OPEN
//! gets the handle closed last.
//!
//! A forecast is only ever a handle this session saw closed. No handle of this session is open
//! while a forecast is used, because every operation that opens handles keeps the forecast
//! locked until its handles are closed. An operation that ends with a handle it could not close
//! (an error, or a cancelled future) leaves no forecast behind. So a request sent to the
//! forecast handle reaches either the file just opened or no file at all, whatever order the
//! server processes requests in. The caller tells which by comparing the handle the OPEN
//! returned with the forecast.

use std::sync::Mutex;

/// The handle OpenSSH's sftp-server returns for the first OPEN of a session: index 0.
pub const OPENSSH_FIRST_HANDLE: &str = "\0\0\0\0";

/// The session's forecast of the next handle, kept between operations.
#[derive(Debug)]
pub struct Forecast {
    /// The handle the next OPEN most likely returns, or `None` when that is unknown.
    next: Option<String>,
    /// False once a forecast missed: the server does not allocate handles as OpenSSH does,
    /// so requests sent ahead would only be wasted.
    enabled: bool,
}

impl Forecast {
    pub fn new() -> Forecast {
        Forecast {
            next: Some(OPENSSH_FIRST_HANDLE.to_string()),
            enabled: true,
        }
    }

    /// Starts an operation that opens handles. The forecast stays empty until
    /// [`Forecast::finish`], so an operation that never finishes leaves none behind.
    pub fn begin(&mut self) -> Ledger {
        Ledger(Mutex::new(LedgerState {
            open: 0,
            last_closed: self.next.take(),
            confused: false,
            enabled: self.enabled,
        }))
    }

    /// Ends the operation `ledger` recorded and keeps the forecast that follows from it.
    pub fn finish(&mut self, ledger: &Ledger) {
        let state = ledger.state();
        self.enabled = state.enabled;
        self.next = if state.open == 0 && !state.confused {
            state.last_closed.clone()
        } else {
            None
        };
    }
}

/// The handles one operation opened and closed, from which the next forecast follows.
#[derive(Debug)]
pub struct Ledger(Mutex<LedgerState>);

#[derive(Debug)]
struct LedgerState {
    open: usize,
    /// The handle closed last, or the forecast the operation started with while it has
    /// closed nothing.
    last_closed: Option<String>,
    /// Set when a reply did not fit the bookkeeping (a CLOSE succeeded on a handle this
    /// operation did not open), so no forecast can be trusted afterwards.
    confused: bool,
    enabled: bool,
}

impl Ledger {
    fn state(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The handle the next OPEN most likely returns, when requests may be sent to it ahead.
    pub fn forecast(&self) -> Option<String> {
        let state = self.state();
        if state.enabled && state.open == 0 && !state.confused {
            state.last_closed.clone()
        } else {
            None
        }
    }

    pub fn opened(&self) {
        self.state().open += 1;
    }

    pub fn closed(&self, handle: &str) {
        let mut state = self.state();
        match state.open.checked_sub(1) {
            Some(open) => state.open = open,
            None => state.confused = true,
        }
        state.last_closed = Some(handle.to_string());
    }

    pub fn confuse(&self) {
        self.state().confused = true;
    }

    /// Records that an OPEN returned another handle than the forecast, which turns
    /// forecasts off for the session.
    pub fn missed(&self) {
        self.state().enabled = false;
    }

    /// Records the replies to a burst that sent requests to `forecast` together with one
    /// OPEN: `opened` is the handle the OPEN returned, `closed_ahead` whether the CLOSE sent
    /// to `forecast` succeeded. Returns whether the requests sent ahead reached the opened
    /// file, and the handle that is still open, if any.
    pub fn settle(
        &self,
        forecast: &str,
        opened: Option<&str>,
        closed_ahead: bool,
    ) -> (bool, Option<String>) {
        if opened.is_some() {
            self.opened();
        }
        let hit = opened == Some(forecast);
        if opened.is_some() && !hit {
            self.missed();
        }
        match (hit, closed_ahead) {
            (true, true) => {
                self.closed(forecast);
                (true, None)
            }
            // A CLOSE succeeded on a handle that this burst did not open.
            (false, true) => {
                self.confuse();
                (false, opened.map(str::to_string))
            }
            (_, false) => (hit, opened.map(str::to_string)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecast_starts_with_first_openssh_handle() {
        let mut forecast = Forecast::new();
        let ledger = forecast.begin();
        assert_eq!(ledger.forecast().as_deref(), Some(OPENSSH_FIRST_HANDLE));
    }

    #[test]
    fn forecast_survives_operation_that_opens_nothing() {
        let mut forecast = Forecast::new();
        let ledger = forecast.begin();
        forecast.finish(&ledger);
        assert_eq!(
            forecast.begin().forecast().as_deref(),
            Some(OPENSSH_FIRST_HANDLE)
        );
    }

    #[test]
    fn forecast_is_last_closed_handle() {
        let mut forecast = Forecast::new();
        let ledger = forecast.begin();
        ledger.opened();
        ledger.opened();
        ledger.closed("a");
        assert_eq!(ledger.forecast(), None, "one handle is still open");
        ledger.closed("b");
        forecast.finish(&ledger);
        assert_eq!(forecast.begin().forecast().as_deref(), Some("b"));
    }

    #[test]
    fn unfinished_operation_leaves_no_forecast() {
        let mut forecast = Forecast::new();
        let ledger = forecast.begin();
        ledger.opened();
        drop(ledger);
        assert_eq!(forecast.begin().forecast(), None);
    }

    #[test]
    fn handle_left_open_leaves_no_forecast() {
        let mut forecast = Forecast::new();
        let ledger = forecast.begin();
        ledger.opened();
        forecast.finish(&ledger);
        assert_eq!(forecast.begin().forecast(), None);
    }

    #[test]
    fn settle_hit_closes_forecast_handle() {
        let mut forecast = Forecast::new();
        let ledger = forecast.begin();
        assert_eq!(ledger.settle("h", Some("h"), true), (true, None));
        forecast.finish(&ledger);
        assert_eq!(forecast.begin().forecast().as_deref(), Some("h"));
    }

    #[test]
    fn settle_miss_keeps_handle_open_and_disables() {
        let mut forecast = Forecast::new();
        let ledger = forecast.begin();
        assert_eq!(
            ledger.settle("h", Some("other"), false),
            (false, Some("other".to_string()))
        );
        ledger.closed("other");
        forecast.finish(&ledger);
        assert_eq!(forecast.begin().forecast(), None, "forecasts are off");
    }

    #[test]
    fn settle_unexpected_close_distrusts_ledger() {
        let mut forecast = Forecast::new();
        let ledger = forecast.begin();
        ledger.settle("h", Some("other"), true);
        ledger.closed("other");
        forecast.finish(&ledger);
        assert_eq!(forecast.begin().forecast(), None);
    }

    #[test]
    fn settle_failed_open_keeps_forecast() {
        let mut forecast = Forecast::new();
        let ledger = forecast.begin();
        let handle = ledger.forecast().unwrap();
        assert_eq!(ledger.settle(&handle, None, false), (false, None));
        assert_eq!(ledger.forecast(), Some(handle));
    }
}
