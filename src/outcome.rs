//! What an HTTP call's result means to a breaker or a retry: the HTTP analogue of
//! resilience4j's record-exceptions / ignore-exceptions.

/// How one call through Envoy ended, as the host observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// The upstream answered with this status.
    Response(u16),
    /// Never connected (Envoy flags UF, UH).
    ConnectFailure,
    /// Connection reset or terminated before a full response (UR, UC, LR).
    Reset,
    /// Upstream timed out (UT).
    Timeout,
}

/// A matcher in record/ignore/retry lists. Written in policy as `"503"`, `"5xx"`,
/// `"connect-failure"`, `"reset"`, `"timeout"`, or a Java exception class with an HTTP meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeMatcher {
    Status(u16),
    /// Status class: 4 for 4xx, 5 for 5xx.
    StatusClass(u8),
    ConnectFailure,
    Reset,
    Timeout,
}

impl OutcomeMatcher {
    pub fn matches(self, result: CallResult) -> bool {
        match (self, result) {
            (OutcomeMatcher::Status(s), CallResult::Response(code)) => s == code,
            (OutcomeMatcher::StatusClass(c), CallResult::Response(code)) => code / 100 == c as u16,
            (OutcomeMatcher::ConnectFailure, CallResult::ConnectFailure) => true,
            (OutcomeMatcher::Reset, CallResult::Reset) => true,
            (OutcomeMatcher::Timeout, CallResult::Timeout) => true,
            _ => false,
        }
    }
}

/// What a breaker records for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Ignored,
}

/// The default failure set: 5xx and every way of getting no response.
pub const DEFAULT_FAILURES: [OutcomeMatcher; 4] = [
    OutcomeMatcher::StatusClass(5),
    OutcomeMatcher::ConnectFailure,
    OutcomeMatcher::Reset,
    OutcomeMatcher::Timeout,
];

/// resilience4j order: ignore wins; then a call is a failure if it matches `record`
/// (the default set when `record` is empty); anything else is a success.
pub fn classify(record: &[OutcomeMatcher], ignore: &[OutcomeMatcher], result: CallResult) -> Outcome {
    if ignore.iter().any(|m| m.matches(result)) {
        return Outcome::Ignored;
    }
    let record = if record.is_empty() { &DEFAULT_FAILURES[..] } else { record };
    if record.iter().any(|m| m.matches(result)) {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

/// Maps Envoy's `response.flags` short string and `response.code` to a call result.
/// `code` is 0 when Envoy has no response code.
pub fn call_result_from_envoy(code: u16, flags: &str) -> CallResult {
    let has = |f: &str| flags.split(',').any(|x| x.trim() == f);
    if has("UF") || has("UH") {
        CallResult::ConnectFailure
    } else if has("UT") {
        CallResult::Timeout
    } else if has("UR") || has("UC") || has("LR") || code == 0 {
        CallResult::Reset
    } else {
        CallResult::Response(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_record_5xx_and_connection_failures_and_count_4xx_as_success() {
        assert_eq!(classify(&[], &[], CallResult::Response(503)), Outcome::Failure);
        assert_eq!(classify(&[], &[], CallResult::Response(404)), Outcome::Success);
        assert_eq!(classify(&[], &[], CallResult::Response(200)), Outcome::Success);
        assert_eq!(classify(&[], &[], CallResult::ConnectFailure), Outcome::Failure);
        assert_eq!(classify(&[], &[], CallResult::Reset), Outcome::Failure);
        assert_eq!(classify(&[], &[], CallResult::Timeout), Outcome::Failure);
    }

    #[test]
    fn ignore_wins_over_record() {
        let ignore = [OutcomeMatcher::Status(503)];
        assert_eq!(classify(&[], &ignore, CallResult::Response(503)), Outcome::Ignored);
        assert_eq!(classify(&[], &ignore, CallResult::Response(500)), Outcome::Failure);
    }

    #[test]
    fn explicit_record_list_replaces_the_default() {
        let record = [OutcomeMatcher::Status(429), OutcomeMatcher::Timeout];
        assert_eq!(classify(&record, &[], CallResult::Response(429)), Outcome::Failure);
        assert_eq!(classify(&record, &[], CallResult::Response(500)), Outcome::Success);
        assert_eq!(classify(&record, &[], CallResult::Timeout), Outcome::Failure);
    }

    #[test]
    fn envoy_flags_tell_calls_without_response() {
        assert_eq!(call_result_from_envoy(503, "UF"), CallResult::ConnectFailure);
        assert_eq!(call_result_from_envoy(503, "UH"), CallResult::ConnectFailure);
        assert_eq!(call_result_from_envoy(504, "UT"), CallResult::Timeout);
        assert_eq!(call_result_from_envoy(503, "UR"), CallResult::Reset);
        assert_eq!(call_result_from_envoy(503, "UC"), CallResult::Reset);
        assert_eq!(call_result_from_envoy(0, ""), CallResult::Reset);
        assert_eq!(call_result_from_envoy(503, ""), CallResult::Response(503));
    }
}
