//! Why a request was rejected rather than answered: the X.880 reject problem, kept as its
//! kind and value. The BER dialect carries it in a ROSE Reject APDU; the link uses the same
//! values for an answer it could not read (it rejects it itself), whatever the dialect.

use std::fmt;

/// Reject problem (X.880 §9 Remote-Operations-Generic-ROS-PDUs `Reject.problem`:
/// GeneralProblem, InvokeProblem, ReturnResultProblem, ReturnErrorProblem); the values are
/// open integers (house habit 5).
///
/// ```asn1
/// problem CHOICE { general [0] GeneralProblem, invoke [1] InvokeProblem,
///     returnResult [2] ReturnResultProblem, returnError [3] ReturnErrorProblem }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    General(i64),
    Invoke(i64),
    ReturnResult(i64),
    ReturnError(i64),
}

impl Problem {
    /// GeneralProblem unrecognizedPDU (0).
    pub const UNRECOGNIZED_PDU: Problem = Problem::General(0);
    /// GeneralProblem mistypedPDU (1).
    pub const MISTYPED_PDU: Problem = Problem::General(1);
    /// GeneralProblem badlyStructuredPDU (2): not valid BER (X.690).
    pub const BADLY_STRUCTURED_PDU: Problem = Problem::General(2);
    /// InvokeProblem unrecognizedOperation (1).
    pub const UNRECOGNIZED_OPERATION: Problem = Problem::Invoke(1);
    /// InvokeProblem mistypedArgument (2).
    pub const MISTYPED_ARGUMENT: Problem = Problem::Invoke(2);
    /// ReturnResultProblem unrecognizedInvocation (0): no such invoke outstanding.
    pub const RESULT_UNRECOGNIZED_INVOCATION: Problem = Problem::ReturnResult(0);
    /// ReturnResultProblem mistypedResult (2).
    pub const MISTYPED_RESULT: Problem = Problem::ReturnResult(2);
    /// ReturnErrorProblem unrecognizedInvocation (0): no such invoke outstanding.
    pub const ERROR_UNRECOGNIZED_INVOCATION: Problem = Problem::ReturnError(0);
    /// ReturnErrorProblem unrecognizedError (2).
    pub const UNRECOGNIZED_ERROR: Problem = Problem::ReturnError(2);
    /// ReturnErrorProblem mistypedParameter (4).
    pub const MISTYPED_PARAMETER: Problem = Problem::ReturnError(4);

    pub const GENERAL: &'static [&'static str] =
        &["unrecognizedPDU", "mistypedPDU", "badlyStructuredPDU"];
    pub const INVOKE: &'static [&'static str] = &[
        "duplicateInvocation",
        "unrecognizedOperation",
        "mistypedArgument",
        "resourceLimitation",
        "releaseInProgress",
        "unrecognizedLinkedId",
        "linkedResponseUnexpected",
        "unexpectedLinkedOperation",
    ];
    pub const RETURN_RESULT: &'static [&'static str] = &[
        "unrecognizedInvocation",
        "resultResponseUnexpected",
        "mistypedResult",
    ];
    pub const RETURN_ERROR: &'static [&'static str] = &[
        "unrecognizedInvocation",
        "errorResponseUnexpected",
        "unrecognizedError",
        "unexpectedError",
        "mistypedParameter",
    ];
    /// The CHOICE alternative name.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::General(_) => "general",
            Problem::Invoke(_) => "invoke",
            Problem::ReturnResult(_) => "returnResult",
            Problem::ReturnError(_) => "returnError",
        }
    }
    pub fn value(&self) -> i64 {
        match *self {
            Problem::General(v)
            | Problem::Invoke(v)
            | Problem::ReturnResult(v)
            | Problem::ReturnError(v) => v,
        }
    }
    /// The X.880 name of the problem value, when it is a known one.
    pub fn name(&self) -> Option<&'static str> {
        let table = match self {
            Problem::General(_) => Self::GENERAL,
            Problem::Invoke(_) => Self::INVOKE,
            Problem::ReturnResult(_) => Self::RETURN_RESULT,
            Problem::ReturnError(_) => Self::RETURN_ERROR,
        };
        usize::try_from(self.value())
            .ok()
            .and_then(|i| table.get(i).copied())
    }
}

impl fmt::Display for Problem {
    /// `rejected:` and the problem name (`rejected:unrecognizedOperation`), or kind and
    /// value for an unknown value (`rejected:invoke/9`): the text of the gateway's error
    /// codes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "rejected:{n}"),
            None => write!(f, "rejected:{}/{}", self.kind(), self.value()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Problem;

    #[test]
    fn display_names_the_problem() {
        assert_eq!(
            Problem::Invoke(1).to_string(),
            "rejected:unrecognizedOperation"
        );
        assert_eq!(
            Problem::ReturnResult(2).to_string(),
            "rejected:mistypedResult"
        );
        assert_eq!(
            Problem::ReturnError(2).to_string(),
            "rejected:unrecognizedError"
        );
        assert_eq!(
            Problem::ReturnError(4).to_string(),
            "rejected:mistypedParameter"
        );
        assert_eq!(Problem::General(1).to_string(), "rejected:mistypedPDU");
        assert_eq!(Problem::Invoke(9).to_string(), "rejected:invoke/9");
    }
}
