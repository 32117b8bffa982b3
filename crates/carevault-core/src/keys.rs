//! Loading and first-time creation of the key material: master key (file), data keys,
//! blind-index key and audit signing key (wrapped by the master key, stored in the database),
//! and the pinned public key of the audit signer (file).

use std::path::Path;

use carevault_crypto::keyring::new_key_material;
use carevault_crypto::signing::AuditSigner;
use carevault_crypto::{BlindIndexKey, DataKey, Keyring, MasterKey};
use carevault_store::{KeyRow, Store};

use crate::datadir::DataDir;
use crate::error::StartupError;

pub(crate) const DATA: &str = "data";
pub(crate) const BLIND: &str = "blind-index";
pub(crate) const SIGNING: &str = "audit-signing";

pub(crate) fn label(purpose: &str, version: i64) -> String {
    format!("{purpose}/{version}")
}

pub(crate) struct Loaded {
    pub master: MasterKey,
    pub keyring: Keyring,
    pub blind: BlindIndexKey,
    pub signer: AuditSigner,
}

pub(crate) fn unwrap_data_keys(master: &MasterKey, rows: &[KeyRow], into: &mut Keyring) -> Result<(), carevault_crypto::KeyError> {
    for r in rows {
        let v = u32::try_from(r.version).map_err(|_| carevault_crypto::KeyError::UnknownVersion(0))?;
        if !into.has(v) {
            let k = master.unwrap_key(&label(DATA, r.version), &r.wrapped)?;
            into.insert(DataKey::from_bytes(v, &k));
        }
    }
    Ok(())
}

/// Loads the keys of an existing store, or creates them for a new one. Returns whether the
/// store was new.
pub(crate) async fn load_or_init(
    store: &Store,
    dd: &DataDir,
    master_path: &Path,
    now: i64,
    instance_kind: &str,
) -> Result<(Loaded, bool), StartupError> {
    let data_rows = store.keys(DATA).await?;
    if data_rows.is_empty() {
        return init(store, dd, master_path, now, instance_kind).await.map(|l| (l, true));
    }
    if !master_path.exists() {
        return Err(StartupError::Keys(format!(
            "the master key file {} is missing, but the database holds data sealed with a master key; restore the key file or set CAREVAULT_MASTER_KEY_FILE",
            master_path.display()
        )));
    }
    let master = MasterKey::load(master_path)?;
    let mut keyring = Keyring::new();
    unwrap_data_keys(&master, &data_rows, &mut keyring)?;
    let blind_row = store
        .keys(BLIND)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StartupError::Keys("the blind-index key is missing from the database".into()))?;
    let blind = BlindIndexKey::from_bytes(&*master.unwrap_key(&label(BLIND, blind_row.version), &blind_row.wrapped)?);
    let sign_row = store
        .keys(SIGNING)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StartupError::Keys("the audit signing key is missing from the database".into()))?;
    let signer = AuditSigner::from_secret(&*master.unwrap_key(&label(SIGNING, sign_row.version), &sign_row.wrapped)?);
    check_pin(store, dd, &signer)?;
    Ok((Loaded { master, keyring, blind, signer }, false))
}

/// The signing key's public half as the pin file holds it.
fn pin_text(signer: &AuditSigner) -> String {
    format!("{}\n", hex::encode(signer.public_key()))
}

/// Where a first start writes the pin before the keys are committed; renamed onto the pin after.
fn pending_pin_path(dd: &DataDir) -> std::path::PathBuf {
    dd.keys_dir().join("audit-signing.pub.init")
}

/// The pinned public key must be present and be the database's. A pin still under its pending
/// name means the first start was cut off after committing the keys: it is finished now.
fn check_pin(store: &Store, dd: &DataDir, signer: &AuditSigner) -> Result<(), StartupError> {
    let pinned = dd.signing_public_key_path();
    let expected = hex::encode(signer.public_key());
    match std::fs::read_to_string(&pinned) {
        Ok(text) if text.trim() == expected => Ok(()),
        Ok(text) if text.trim().is_empty() || hex::decode(text.trim()).map(|k| k.len() != 32).unwrap_or(true) => {
            Err(StartupError::Keys(format!(
                "{} is damaged (empty or not a 32-byte hex key). Restore it from a backup of this data folder. \
                 If you are certain this database is genuine, its audit key is {expected}: write that line into the file and start again",
                pinned.display()
            )))
        }
        Ok(_) => Err(StartupError::Keys(format!(
            "the audit signing key in the database does not match the pinned public key {}; the database may have been replaced",
            pinned.display()
        ))),
        Err(_) => {
            let pending = pending_pin_path(dd);
            if std::fs::read_to_string(&pending).map(|t| t.trim() == expected).unwrap_or(false) {
                carevault_crypto::files::rename_durably(&pending, &pinned)
                    .map_err(|e| StartupError::Keys(format!("{}: {e}", pinned.display())))?;
                tracing::warn!(pin = %pinned.display(), "finished an initialization that was interrupted after its keys were committed");
                return Ok(());
            }
            let used = dd.checkpoint_log_path().exists() || dd.audit_dir().join("signing-key.pub").exists();
            if store.backend() == carevault_store::Backend::Sqlite || used {
                return Err(StartupError::Keys(format!(
                    "the pinned audit public key {} is missing, so the database's audit key cannot be trusted. Restore the file \
                     from a backup of this data folder (a copy is kept in audit/signing-key.pub). If you are certain this database \
                     is genuine, its audit key is {expected}: write that line into the file and start again",
                    pinned.display()
                )));
            }
            // A new data folder of an instance joining a shared PostgreSQL store: it pins the
            // store's key now (trust on first use), and verifies against it from then on.
            write_pinned(&pinned, signer)?;
            tracing::warn!(pin = %pinned.display(), "pinned the audit signing key of the shared database in this new data folder");
            Ok(())
        }
    }
}

fn write_pinned(path: &Path, signer: &AuditSigner) -> Result<(), StartupError> {
    carevault_crypto::files::write_replace(path, pin_text(signer).as_bytes())
        .map_err(|e| StartupError::Keys(format!("{}: {e}", path.display())))
}

/// First start. Every file is written crash-safe (temporary name, sync, rename, folder sync),
/// in an order a restart after a crash at any point can finish: master key, the pin under its
/// pending name, the keys in the database (one transaction), the pin under its real name, then
/// the empty checkpoint file.
async fn init(store: &Store, dd: &DataDir, master_path: &Path, now: i64, instance_kind: &str) -> Result<Loaded, StartupError> {
    let pinned = dd.signing_public_key_path();
    if pinned.exists() {
        return Err(StartupError::Refused(format!(
            "the data folder has an audit signing key ({}) but the database holds no keys: the database may have been replaced or emptied. \
             Restore the database, or move the data folder aside to start a new installation",
            pinned.display()
        )));
    }
    let master = if master_path.exists() { MasterKey::load(master_path)? } else { MasterKey::create(master_path)? };
    let data = new_key_material();
    let blind = new_key_material();
    let signer = AuditSigner::generate();
    let rows = [
        KeyRow { purpose: DATA.into(), version: 1, wrapped: master.wrap(&label(DATA, 1), &data), public_key: None, created_at: now },
        KeyRow { purpose: BLIND.into(), version: 1, wrapped: master.wrap(&label(BLIND, 1), &blind), public_key: None, created_at: now },
        KeyRow {
            purpose: SIGNING.into(),
            version: 1,
            wrapped: master.wrap(&label(SIGNING, 1), &signer.secret()),
            public_key: Some(signer.public_key().to_vec()),
            created_at: now,
        },
    ];
    let pending = pending_pin_path(dd);
    write_pinned(&pending, &signer)?;
    let mut tx = store.begin().await?;
    tx.lock_audit_head().await?;
    for r in &rows {
        tx.insert_key(r).await?;
    }
    tx.set_meta("instance_kind", instance_kind).await?;
    tx.set_meta("store_id", &hex::encode(carevault_crypto::random_bytes::<16>())).await?;
    tx.set_meta("created_at", &now.to_string()).await?;
    tx.commit().await?;
    carevault_crypto::files::rename_durably(&pending, &pinned).map_err(|e| StartupError::Keys(format!("{}: {e}", pinned.display())))?;
    // Keep a private copy of the public key beside the checkpoint file too.
    let copy = dd.audit_dir().join("signing-key.pub");
    carevault_crypto::files::write_replace(&copy, pin_text(&signer).as_bytes())
        .map_err(|e| StartupError::Keys(format!("{}: {e}", copy.display())))?;
    let mut keyring = Keyring::new();
    keyring.insert(DataKey::from_bytes(1, &data));
    Ok(Loaded { master, keyring, blind: BlindIndexKey::from_bytes(&blind), signer })
}
