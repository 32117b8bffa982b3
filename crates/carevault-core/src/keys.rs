//! Loading and first-time creation of the key material: master key (file), data keys,
//! blind-index key and audit signing key (wrapped by the master key, stored in the database),
//! and the pinned public key of the audit signer (file).

use std::path::Path;

use carevault_crypto::keyring::{new_key_material, write_secret_file};
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
    let pinned = dd.signing_public_key_path();
    match std::fs::read_to_string(&pinned) {
        Ok(text) => {
            if text.trim() != hex::encode(signer.public_key()) {
                return Err(StartupError::Keys(format!(
                    "the audit signing key in the database does not match the pinned public key {}; the database may have been replaced",
                    pinned.display()
                )));
            }
        }
        Err(_) => {
            // PostgreSQL store shared by several instances: each data folder pins the key.
            write_pinned(&pinned, &signer)?;
        }
    }
    Ok((Loaded { master, keyring, blind, signer }, false))
}

fn write_pinned(path: &Path, signer: &AuditSigner) -> Result<(), StartupError> {
    std::fs::write(path, format!("{}\n", hex::encode(signer.public_key())))
        .map_err(|e| StartupError::Keys(format!("{}: {e}", path.display())))
}

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
    let mut tx = store.begin().await?;
    tx.lock_audit_head().await?;
    for r in &rows {
        tx.insert_key(r).await?;
    }
    tx.set_meta("instance_kind", instance_kind).await?;
    tx.set_meta("store_id", &hex::encode(carevault_crypto::random_bytes::<16>())).await?;
    tx.set_meta("created_at", &now.to_string()).await?;
    tx.commit().await?;
    write_pinned(&pinned, &signer)?;
    // Keep a private copy of the public key beside the checkpoint file too.
    let _ = write_secret_file(&dd.audit_dir().join("signing-key.pub"), format!("{}\n", hex::encode(signer.public_key())).as_bytes());
    let mut keyring = Keyring::new();
    keyring.insert(DataKey::from_bytes(1, &data));
    Ok(Loaded { master, keyring, blind: BlindIndexKey::from_bytes(&blind), signer })
}
