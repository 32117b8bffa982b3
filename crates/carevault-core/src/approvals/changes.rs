//! The writes of separation of duties: enrollment invitations and the approvals queue: what a job
//! of this feature changes, applied by the audit writer inside its transaction (and the job's
//! savepoint), so each change commits with its audit records or not at all. Each says whether it
//! waits for free space and how a store error maps to a domain error that fails only its job.

use carevault_store::WriteTx;

use crate::audit::change::{Applied, Change, OpFailure};
use crate::error::CoreError;

pub(crate) enum ApprovalChange {
    PutInvitation(carevault_store::InvitationRow),
    /// Uses up a live invitation; the job fails when it is not (a second use, a race).
    TakeInvitation {
        user_id: String,
        code_hash: Vec<u8>,
        now: i64,
    },
    InsertApproval(Box<carevault_store::ApprovalRow>),
    /// Decides a pending request; the job fails when it was decided meanwhile.
    DecideApproval {
        id: String,
        state: String,
        by: String,
        now: i64,
    },
}

impl Change for ApprovalChange {
    fn apply<'a>(&'a self, tx: &'a mut WriteTx) -> Applied<'a> {
        Box::pin(async move {
            match self {
                Self::PutInvitation(i) => Ok(tx.put_invitation(i).await?),
                Self::TakeInvitation { user_id, code_hash, now } => {
                    if tx.take_invitation(user_id, code_hash, *now).await? {
                        Ok(())
                    } else {
                        Err(OpFailure::Domain(CoreError::Refused {
                            reason: "invitation",
                            message: "the invitation was already used or has expired".into(),
                        }))
                    }
                }
                Self::InsertApproval(a) => Ok(tx.insert_approval(a).await?),
                Self::DecideApproval { id, state, by, now } => {
                    if tx.decide_approval(id, state, by, *now).await? {
                        Ok(())
                    } else {
                        Err(OpFailure::Domain(CoreError::Conflict("the request was decided meanwhile".into())))
                    }
                }
            }
        })
    }

    fn waits_for_space(&self) -> bool {
        true
    }
}
