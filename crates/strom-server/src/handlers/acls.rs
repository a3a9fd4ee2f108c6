//! DescribeAcls, CreateAcls and DeleteAcls. Strom has no authorizer, and
//! Kafka without one answers every ACL request SECURITY_DISABLED: the whole
//! response for DescribeAcls, each creation and each filter otherwise.

use strom_protocol::messages::create_acls_response::AclCreationResult;
use strom_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use strom_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use strom_protocol::ErrorCode;

use super::str_bytes;

/// Kafka's messages, word for word: the admin tools print them.
const DESCRIBE_MESSAGE: &str = "No Authorizer is configured on the broker";
const ALTER_MESSAGE: &str = "No Authorizer is configured.";

pub(super) fn describe(_req: &DescribeAclsRequest) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(ErrorCode::SecurityDisabled.code())
        .with_error_message(Some(str_bytes(DESCRIBE_MESSAGE)))
}

pub(super) fn create(req: &CreateAclsRequest) -> CreateAclsResponse {
    CreateAclsResponse::default().with_results(
        req.creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(ErrorCode::SecurityDisabled.code())
                    .with_error_message(Some(str_bytes(ALTER_MESSAGE)))
            })
            .collect(),
    )
}

pub(super) fn delete(req: &DeleteAclsRequest) -> DeleteAclsResponse {
    DeleteAclsResponse::default().with_filter_results(
        req.filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(ErrorCode::SecurityDisabled.code())
                    .with_error_message(Some(str_bytes(ALTER_MESSAGE)))
            })
            .collect(),
    )
}
