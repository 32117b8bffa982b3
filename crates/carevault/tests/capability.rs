//! The CapabilityStatement against what the router really serves (issue 12, part 7), on SQLite
//! or PostgreSQL. The server is probed from outside, without a session: a route that exists
//! answers 401 (authentication required), one that does not answers 404 or 405. Every FHIR R4
//! resource type is tried with every RESTful interaction; each one that is served must be
//! declared, and each one declared must be served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the test failing

use std::collections::BTreeSet;

use carevault_testkit::App;
use serde_json::Value;

/// The resource types of FHIR R4 (4.0.1).
const R4_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Each RESTful interaction and the request that performs it (`{T}` the type).
const INTERACTIONS: &[(&str, &str, &str)] = &[
    ("read", "GET", "/{T}/probe-1"),
    ("vread", "GET", "/{T}/probe-1/_history/1"),
    ("update", "PUT", "/{T}/probe-1"),
    ("patch", "PATCH", "/{T}/probe-1"),
    ("delete", "DELETE", "/{T}/probe-1"),
    ("history-instance", "GET", "/{T}/probe-1/_history"),
    ("history-type", "GET", "/{T}/_history"),
    ("create", "POST", "/{T}"),
    ("search-type", "GET", "/{T}"),
    ("search-type", "POST", "/{T}/_search"),
];

async fn probe(c: &reqwest::Client, app: &App, method: &str, path: &str) -> u16 {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    c.request(m, app.url(&format!("/fhir/r4{path}"))).send().await.expect("probe").status().as_u16()
}

#[tokio::test]
async fn the_capability_statement_declares_exactly_what_is_served() {
    let app = App::spawn().await.expect("app");
    let c = app.client().expect("client");
    let cs: Value = c.get(app.url("/fhir/r4/metadata")).send().await.expect("metadata").json().await.expect("json");
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().expect("rest.resource");
    let mut declared: BTreeSet<(String, String)> = BTreeSet::new();
    let mut operations: Vec<(String, String)> = Vec::new();
    for r in resources {
        let t = r["type"].as_str().expect("type").to_string();
        assert!(R4_TYPES.contains(&t.as_str()), "{t} is not an R4 resource type");
        for i in r["interaction"].as_array().expect("interaction") {
            declared.insert((t.clone(), i["code"].as_str().expect("code").to_string()));
        }
        for o in r["operation"].as_array().into_iter().flatten() {
            operations.push((t.clone(), o["name"].as_str().expect("name").to_string()));
        }
        for p in r["searchParam"].as_array().into_iter().flatten() {
            assert!(p["name"].is_string() && p["type"].is_string(), "{p}");
        }
    }

    // Served → declared: every type, every interaction.
    let mut served = BTreeSet::new();
    for t in R4_TYPES {
        for (code, method, path) in INTERACTIONS {
            let status = probe(&c, &app, method, &path.replace("{T}", t)).await;
            assert!(matches!(status, 401 | 404 | 405), "{method} {t}: {status}");
            if status == 401 {
                served.insert(((*t).to_string(), (*code).to_string()));
            }
        }
    }
    let undeclared: Vec<_> = served.difference(&declared).collect();
    assert!(undeclared.is_empty(), "served but missing from the CapabilityStatement: {undeclared:?}");
    // Declared → served (both search forms of a declared search are not required; one is).
    let unserved: Vec<_> = declared.difference(&served).collect();
    assert!(unserved.is_empty(), "declared but not served: {unserved:?}");
    assert!(served.len() >= 25, "{served:?}");

    // Declared operations are served at instance level; an undeclared one is not.
    for (t, name) in &operations {
        assert_eq!(probe(&c, &app, "GET", &format!("/{t}/probe-1/${name}")).await, 401, "{t} ${name}");
    }
    assert!(operations.contains(&("Consent".into(), "pdf".into())), "{operations:?}");
    assert_ne!(probe(&c, &app, "GET", "/Patient/probe-1/$everything").await, 401);
}
