//! The typed layer of `ctigate-csta-model` carried in X.880 ROSE APDUs: building an Invoke,
//! ReturnResult or ReturnError from a typed argument, result or error, and reading a typed
//! argument or result out of an Invoke or ReturnResult.
//!
//! Extension traits, so that call sites keep reading `arg.invoke(id)`,
//! `Argument::from_invoke(&inv)`; `use ctigate_csta::rose_ext::*` brings them in.

use crate::rose::{Code, Invoke, InvokeId, ReturnError, ReturnResult, Rose};
use ctigate_csta_model::events::EventReport;
use ctigate_csta_model::ops::{
    no_data, Argument, Operation, OperationResult, TypedArgument, TypedResult,
};
use ctigate_csta_model::types::{TypeError, UniversalFailure};
use ctigate_csta_model::value::Value;
use ctigate_csta_model::Payload;

/// An invoke APDU of `op` with `argument` (X.880 `Invoke`, opcode `local`).
pub fn invoke(op: Operation, invoke_id: i64, argument: Payload) -> Rose {
    Rose::Invoke(Invoke {
        invoke_id: InvokeId::Present(invoke_id),
        linked_id: None,
        opcode: Code::Local(op.code()),
        argument: Some(argument),
    })
}

/// A returnResult APDU of `op` with `result` (X.880 `ReturnResult`).
pub fn return_result(op: Operation, invoke_id: i64, result: Payload) -> Rose {
    Rose::ReturnResult(ReturnResult {
        invoke_id: InvokeId::Present(invoke_id),
        result: Some((Code::Local(op.code()), result)),
    })
}

/// A returnResult APDU with `noData` (see [`no_data`]).
pub fn no_data_result(op: Operation, invoke_id: i64) -> Option<Rose> {
    no_data(op).map(|p| return_result(op, invoke_id, p))
}

/// The operation of a local code (error: unknown or global code).
pub fn opcode(c: &Code) -> Result<Operation, TypeError> {
    match c {
        Code::Local(n) => Operation::from_code(*n)
            .ok_or_else(|| TypeError::new("Code", format!("unknown operation code {n}"))),
        Code::Global(_) => Err(TypeError::new("Code", "global operation code")),
    }
}

/// A typed argument (or event report) as an invoke APDU.
pub trait ToInvoke {
    /// An invoke APDU carrying this argument.
    fn invoke(&self, invoke_id: i64) -> Rose;
}

impl<T: TypedArgument> ToInvoke for T {
    fn invoke(&self, invoke_id: i64) -> Rose {
        invoke(self.operation(), invoke_id, self.payload())
    }
}

/// A typed result as a returnResult APDU.
pub trait ToReturnResult {
    /// A returnResult APDU carrying this result.
    fn return_result(&self, invoke_id: i64) -> Rose;
}

impl<T: TypedResult> ToReturnResult for T {
    fn return_result(&self, invoke_id: i64) -> Rose {
        return_result(self.operation(), invoke_id, self.payload())
    }
}

/// universalFailure as a returnError APDU.
pub trait ToReturnError {
    /// A returnError APDU with this parameter for `invoke_id`.
    fn return_error(&self, invoke_id: i64) -> Rose;
}

impl ToReturnError for UniversalFailure {
    fn return_error(&self, invoke_id: i64) -> Rose {
        Rose::ReturnError(ReturnError {
            invoke_id: InvokeId::Present(invoke_id),
            errcode: Code::Local(UniversalFailure::ERROR_CODE),
            parameter: Some(self.payload()),
        })
    }
}

/// Reading a typed argument out of an invoke.
pub trait FromInvoke: Sized {
    /// The typed argument of an invoke (error: unknown or global opcode, absent or
    /// untyped argument, or a value of the wrong shape).
    fn from_invoke(inv: &Invoke) -> Result<Self, TypeError>;
}

impl FromInvoke for Argument {
    fn from_invoke(inv: &Invoke) -> Result<Argument, TypeError> {
        let op = opcode(&inv.opcode)?;
        let arg = inv
            .argument
            .as_ref()
            .ok_or_else(|| TypeError::new("Invoke", format!("{op} without argument")))?;
        Argument::from_value(op, &arg.value).map_err(|e| e.within("argument"))
    }
}

impl FromInvoke for EventReport {
    /// The report of a cSTAEventReport invoke.
    fn from_invoke(inv: &Invoke) -> Result<EventReport, TypeError> {
        report_from_invoke(inv, EventReport::from_value)
    }
}

/// The lenient reading of a cSTAEventReport invoke.
pub trait ReportFromInvoke {
    /// The report of a cSTAEventReport invoke, read leniently
    /// ([`EventReport::from_value_lenient`]).
    fn from_invoke_lenient(inv: &Invoke) -> Result<EventReport, TypeError>;
}

impl ReportFromInvoke for EventReport {
    fn from_invoke_lenient(inv: &Invoke) -> Result<EventReport, TypeError> {
        report_from_invoke(inv, EventReport::from_value_lenient)
    }
}

fn report_from_invoke(
    inv: &Invoke,
    read: fn(&Value) -> Result<EventReport, TypeError>,
) -> Result<EventReport, TypeError> {
    if inv.opcode != Code::Local(Operation::CstaEventReport.code()) {
        return Err(TypeError::new("Invoke", "not a cSTAEventReport"));
    }
    let arg = inv
        .argument
        .as_ref()
        .ok_or_else(|| TypeError::new("Invoke", "cSTAEventReport without argument"))?;
    read(&arg.value).map_err(|e| e.within("argument"))
}

/// Reading a typed result out of a returnResult.
pub trait FromReturnResult: Sized {
    /// The typed result of a returnResult APDU; `Ok(None)` when it carries none.
    fn from_return_result(r: &ReturnResult) -> Result<Option<Self>, TypeError>;
}

impl FromReturnResult for OperationResult {
    fn from_return_result(r: &ReturnResult) -> Result<Option<OperationResult>, TypeError> {
        match &r.result {
            None => Ok(None),
            Some((code, p)) => {
                let op = opcode(code)?;
                OperationResult::from_value(op, &p.value)
                    .map(Some)
                    .map_err(|e| e.within("result"))
            }
        }
    }
}
