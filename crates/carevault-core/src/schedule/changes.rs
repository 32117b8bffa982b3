//! The writes of scheduling: practitioners, availability, closures, appointment types, appointments
//! and their history, the waitlist: what a job of this feature changes, applied by the audit writer
//! inside its transaction (and the job's savepoint), so each change commits with its audit records
//! or not at all. Each says whether it waits for free space and how a store error maps to a domain
//! error that fails only its job.

use carevault_store::{
    AppointmentRow, AppointmentTypeRow, AvailabilityRow, Booked, PractitionerRoleRow, PractitionerRow, StoreError, WaitlistRow, WriteTx,
};

use crate::audit::change::{Applied, Change, OpFailure};
use crate::error::CoreError;

pub(crate) enum ScheduleChange {
    InsertPractitioner {
        row: Box<PractitionerRow>,
        roles: Vec<PractitionerRoleRow>,
    },
    ReplaceAvailability {
        practitioner_id: String,
        location_id: String,
        rows: Vec<AvailabilityRow>,
    },
    /// Fails the job with a conflict when a live appointment of the practitioner overlaps.
    BookAppointment {
        row: Box<AppointmentRow>,
        allow_overlap: bool,
    },
    AppointmentStatus {
        id: String,
        from: String,
        to: String,
        reason: Option<String>,
        actor: String,
        at: i64,
    },
    NoteAppointmentHistory {
        id: String,
        from: String,
        to: String,
        reason: Option<String>,
        actor: String,
        at: i64,
    },
    InsertClosure {
        id: String,
        location_id: String,
        practitioner_id: Option<String>,
        kind: String,
        start: i64,
        end: i64,
        now: i64,
    },
    InsertAppointmentType(Box<AppointmentTypeRow>),
    InsertWaitlist(Box<WaitlistRow>),
    /// Fails the job with a conflict when the entry is no longer waiting.
    OfferWaitlist {
        id: String,
        span: (i64, i64),
        now: i64,
    },
    /// Fails the job with a conflict when the entry's status is no longer `from`.
    SetWaitlistStatus {
        id: String,
        from: &'static str,
        to: &'static str,
        appointment_id: Option<String>,
    },
}

impl Change for ScheduleChange {
    fn apply<'a>(&'a self, tx: &'a mut WriteTx) -> Applied<'a> {
        Box::pin(async move {
            match self {
                Self::InsertPractitioner { row, roles } => tx.insert_practitioner(row, roles).await.map_err(|e| match e {
                    StoreError::Conflict(_) => {
                        OpFailure::Domain(CoreError::Conflict("this NPI or account is already registered as a practitioner".into()))
                    }
                    other => OpFailure::Store(other),
                }),
                Self::ReplaceAvailability { practitioner_id, location_id, rows } => {
                    Ok(tx.replace_availability(practitioner_id, location_id, rows).await?)
                }
                Self::BookAppointment { row, allow_overlap } => match tx.book_appointment(row, *allow_overlap).await? {
                    Booked::Yes => Ok(()),
                    Booked::PractitionerBusy => Err(OpFailure::Domain(CoreError::Conflict("the slot is already booked".into()))),
                    Booked::RoomBusy => Err(OpFailure::Domain(CoreError::Conflict("the room is already booked at that time".into()))),
                },
                Self::AppointmentStatus { id, from, to, reason, actor, at } => {
                    if tx.change_appointment_status(id, from, to, reason.as_deref(), actor, *at).await? {
                        Ok(())
                    } else {
                        Err(OpFailure::Domain(CoreError::Conflict("the appointment changed meanwhile; reload it".into())))
                    }
                }
                Self::NoteAppointmentHistory { id, from, to, reason, actor, at } => {
                    Ok(tx.note_appointment_history(id, from, to, reason.as_deref(), actor, *at).await?)
                }
                Self::InsertClosure { id, location_id, practitioner_id, kind, start, end, now } => {
                    Ok(tx.insert_closure(id, location_id, practitioner_id.as_deref(), kind, *start, *end, *now).await?)
                }
                Self::InsertAppointmentType(t) => tx.insert_appointment_type(t).await.map_err(|e| match e {
                    StoreError::Conflict(_) => {
                        OpFailure::Domain(CoreError::Conflict("this organization already has a type with that code".into()))
                    }
                    other => OpFailure::Store(other),
                }),
                Self::InsertWaitlist(w) => Ok(tx.insert_waitlist(w).await?),
                Self::OfferWaitlist { id, span, now } => {
                    if tx.offer_waitlist(id, *span, *now).await? {
                        Ok(())
                    } else {
                        Err(OpFailure::Domain(CoreError::Conflict("the waitlist changed meanwhile; try again".into())))
                    }
                }
                Self::SetWaitlistStatus { id, from, to, appointment_id } => {
                    if tx.set_waitlist_status(id, from, to, appointment_id.as_deref()).await? {
                        Ok(())
                    } else {
                        Err(OpFailure::Domain(CoreError::Conflict(format!("the waitlist entry is no longer {from}"))))
                    }
                }
            }
        })
    }

    fn waits_for_space(&self) -> bool {
        true
    }
}
