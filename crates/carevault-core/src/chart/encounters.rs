//! Encounters: opened from a checked-in appointment or as a walk-in, finished, read and listed.

use super::*;

impl Vault {
    // ----- encounters -----

    /// Opens an encounter: from a booked/arrived appointment (its patient, practitioner and
    /// location; the appointment moves to checked-in) or a walk-in (patient, practitioner and
    /// location given).
    pub async fn start_encounter(&self, actor: &Actor, purpose: PurposeOfUse, req: &Value) -> Result<ChartRecord, CoreError> {
        let appointment = req.get("appointmentId").and_then(Value::as_str);
        let (patient, practitioner, location, appt) = match appointment {
            Some(aid) => {
                let row = if aid.len() == 32 && aid.bytes().all(|b| b.is_ascii_hexdigit()) {
                    self.inner.store.appointment(aid).await?
                } else {
                    None
                };
                let Some(row) = row else {
                    self.gate(actor, Operation::EncounterCreate, purpose, &crate::authz::Target::Anywhere, ("Encounter", None)).await?;
                    return Err(CoreError::NotFound { resource: format!("Appointment/{}", crate::audit::audit_safe_id(aid)) });
                };
                (row.patient_id.clone(), row.practitioner_id.clone(), row.location_id.clone(), Some(row))
            }
            None => {
                let field = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_string);
                // All three are required: a missing practitioner or location is a malformed
                // request (400), not a reference to a record that does not exist (404).
                let (Some(patient), Some(practitioner), Some(location)) =
                    (field("patientId"), field("practitionerId"), field("locationId"))
                else {
                    self.gate(actor, Operation::EncounterCreate, purpose, &crate::authz::Target::Anywhere, ("Encounter", None)).await?;
                    let missing =
                        ["patientId", "practitionerId", "locationId"].into_iter().find(|k| field(k).is_none()).unwrap_or("patientId");
                    return Err(bad(missing, "a walk-in encounter needs patientId, practitionerId and locationId (or give appointmentId)"));
                };
                (patient, practitioner, location, None)
            }
        };
        let (_, allowed) =
            self.gate_patient(actor, Operation::EncounterCreate, purpose, AuditAction::Create, "Encounter", &patient).await?;
        let now = self.inner.clock.now_micros();
        let checked: Result<(), CoreError> = async {
            // Ids that no record can have are not looked up (PostgreSQL refuses a NUL byte in
            // a text parameter: that was a 500).
            let plausible = |s: &str| s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !plausible(&location) {
                return Err(CoreError::NotFound { resource: format!("Location/{}", crate::audit::audit_safe_id(&location)) });
            }
            if !plausible(&practitioner) {
                return Err(CoreError::NotFound { resource: "a role of this practitioner at this location".into() });
            }
            self.practice_place(&practitioner, &location).await?;
            if let Some(a) = &appt {
                if !["booked", "arrived", "checked-in"].contains(&a.status.as_str()) {
                    return Err(CoreError::Conflict(format!(
                        "the appointment is {}; an encounter needs a booked or arrived one",
                        a.status
                    )));
                }
                let open = self.inner.store.child_records(&a.id).await?;
                if open.iter().any(|r| r.kind == "encounter") {
                    return Err(CoreError::Conflict("this appointment already has an encounter".into()));
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = checked {
            return Err(self.refuse_on(actor, purpose, AuditAction::Create, ("Encounter", None, &patient), e).await);
        }
        let mut extra = Vec::new();
        if let Some(a) = &appt {
            if a.status != "checked-in" {
                extra.push(
                    ScheduleChange::AppointmentStatus {
                        id: a.id.clone(),
                        from: a.status.clone(),
                        to: "checked-in".into(),
                        reason: None,
                        actor: actor.audit_name(),
                        at: now,
                    }
                    .into(),
                );
            }
        }
        let body = json!({
            "practitionerId": practitioner,
            "locationId": location,
            "appointmentId": appt.as_ref().map(|a| a.id.clone()),
            "class": if appt.is_some() { "AMB" } else { "AMB-walk-in" },
            "start": now,
        });
        let parent = appt.as_ref().map(|a| a.id.as_str());
        self.insert_chart_record(actor, purpose, &allowed, None, ("encounter", &patient, parent, "in-progress"), body, None, extra).await
    }

    /// Finishes an encounter (no more notes can be started on it; addenda remain possible).
    pub async fn finish_encounter(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<ChartRecord, CoreError> {
        let (row, allowed) = self.gated_record(actor, purpose, Operation::EncounterFinish, AuditAction::Update, &["encounter"], id).await?;
        if row.status != "in-progress" {
            let e = CoreError::Conflict(format!("the encounter is {}", row.status));
            return Err(self.refuse_on(actor, purpose, AuditAction::Update, ("Encounter", Some(id), &row.patient_id), e).await);
        }
        let receipt = self.audit_read_for_change(actor, purpose, &row, &allowed).await?;
        let rec = self.open_chart(&receipt, &row).await?;
        let mut body = rec.body;
        body["end"] = json!(self.inner.clock.now_micros());
        // The encounter and its appointment (fulfilled) change in one transaction.
        let mut extra = (Vec::new(), Vec::new());
        if let Some(aid) = row.parent_id.as_deref() {
            if let Some(a) = self.inner.store.appointment(aid).await?.filter(|a| a.status == "checked-in") {
                let now = self.inner.clock.now_micros();
                extra.0.push(
                    ScheduleChange::AppointmentStatus {
                        id: a.id,
                        from: "checked-in".into(),
                        to: "fulfilled".into(),
                        reason: None,
                        actor: actor.audit_name(),
                        at: now,
                    }
                    .into(),
                );
                extra.1.push(
                    Draft::new(now, AuditAction::Update, Outcome::Success)
                        .by(actor)
                        .resource("Appointment", Some(aid))
                        .patient(&row.patient_id)
                        .purpose(purpose),
                );
            }
        }
        self.update_chart_record(actor, purpose, &allowed, &row, ("finished", body, None), extra).await
    }

    /// Reading a record's current body in order to change it is itself audited (a read).
    pub(super) async fn audit_read_for_change(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        row: &RecordRow,
        allowed: &Allowed,
    ) -> Result<Receipt, CoreError> {
        let d = Draft::new(self.inner.clock.now_micros(), AuditAction::Read, Outcome::Success)
            .by(actor)
            .resource(resource_of(&row.kind), Some(&row.id))
            .patient(&row.patient_id)
            .purpose(purpose)
            .review(allowed);
        self.inner.writer.append(d).await
    }

    pub async fn read_encounter(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<ChartRecord, CoreError> {
        self.read_record(actor, purpose, Operation::EncounterRead, &["encounter"], id).await
    }

    pub async fn patient_encounters(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str) -> Result<Vec<ChartRecord>, CoreError> {
        self.list_records(actor, purpose, Operation::EncounterList, &["encounter"], patient_id).await
    }
}
