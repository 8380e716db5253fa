//! Roster import on both backends: precise row errors, idempotent
//! re-import (PINs included), deltas per hospital, names masked.

mod common;

use wuding_server::roster::{RosterKind, delta_for, import};
use wuding_server::store::Store;

const PATIENTS: &str = "insured_id,card_uid,name,hospital_code
330102195403170012,04A1B2C3,王小明,H33010200017
330106196811020025,04112233445566,李四,H33010200017
440305197001010011,04C0FFEE,张三丰,H44030500003
440305197001010012,04c0ffee,赵六,H44030500003
";

const STAFF: &str = "staff_id,card_uid,name,role,hospital_code,pin
N0231,04FF0001,李护士,nurse,H33010200017,2468
D0107,04FF0002,陈医生,doctor,H33010200017,1357
N0999,04FF0003,王护士,janitor,H33010200017,1111
";

const PLANS: &str = "plan_id,insured_id,hospital_code,department_code,doctor_ids,kinds,drug_code,max_dose,max_sessions_per_week,valid_from,valid_to
PL-1,330102195403170012,H33010200017,NEPH-HD,D0107,HD;HDF,,,3,2026-01-01,2026-12-31
PL-2,330106196811020025,H33010200017,ONC-DAY,D0311,CHEMO,XL01XA01,75mg,,2026-10-01,2027-03-31
PL-3,330106196811020025,H33010200017,ONC-DAY,D0311,CHEMO,,75mg,,2026-10-01,2027-03-31
";

const PRICES: &str = "hospital_code,code,unit_price_fen
H33010200017,003105010010000,42000
H33010200017,003105010040000,61000
";

both_backends!(
    rosters_import_idempotently_and_deliver_per_hospital,
    |store: &dyn Store| {
        let p = import(store, RosterKind::Patients, PATIENTS.as_bytes()).unwrap();
        assert_eq!(p.rows, 4);
        let errors: Vec<String> = p.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            vec!["line 5, column card_uid: must be upper-case hex of a 4-, 7- or 10-byte UID"]
        );
        let s = import(store, RosterKind::Staff, STAFF.as_bytes()).unwrap();
        assert_eq!(s.errors.len(), 1);
        assert!(
            s.errors[0]
                .to_string()
                .contains("`janitor` is not nurse or doctor")
        );
        let pl = import(store, RosterKind::Plans, PLANS.as_bytes()).unwrap();
        assert_eq!(pl.errors.len(), 1);
        assert_eq!(
            pl.errors[0].to_string(),
            "line 4, column drug_code: is required for CHEMO and ANTIREJECT plans"
        );
        import(store, RosterKind::Prices, PRICES.as_bytes()).unwrap();

        let delta = delta_for(store, "H33010200017", 0).unwrap();
        assert_eq!(delta.patients.len(), 2, "only this hospital's patients");
        assert_eq!(delta.patients[0].display_name, "王*明");
        assert_eq!(delta.patients[1].display_name, "李*");
        assert_eq!(delta.staff.len(), 2);
        assert!(delta.staff[0].pin_hash.starts_with("$argon2id$"));
        assert!(!delta.staff.iter().any(|s| s.pin_hash.contains("2468")));
        assert_eq!(delta.plans.len(), 2);
        assert_eq!(delta.prices.len(), 2);

        // Re-importing the same files changes nothing; the cursor stays.
        for (kind, text) in [
            (RosterKind::Patients, PATIENTS),
            (RosterKind::Staff, STAFF),
            (RosterKind::Plans, PLANS),
            (RosterKind::Prices, PRICES),
        ] {
            assert_eq!(
                import(store, kind, text.as_bytes()).unwrap().inserted,
                0,
                "{kind:?}"
            );
        }
        let again = delta_for(store, "H33010200017", delta.cursor).unwrap();
        assert_eq!(again.cursor, delta.cursor);
        assert!(again.patients.is_empty() && again.staff.is_empty() && again.prices.is_empty());

        // A price change travels alone.
        import(
            store,
            RosterKind::Prices,
            "hospital_code,code,unit_price_fen\nH33010200017,003105010010000,43500\n".as_bytes(),
        )
        .unwrap();
        let change = delta_for(store, "H33010200017", delta.cursor).unwrap();
        assert_eq!(change.prices.len(), 1);
        assert_eq!(change.prices[0].unit_price_fen, 43_500);
        assert!(change.patients.is_empty());
    }
);

fn terminals_csv() -> String {
    use wuding_protocol::TerminalSigner;
    let a = TerminalSigner::from_seed(&[1; 32]);
    let b = TerminalSigner::from_seed(&[2; 32]);
    let c = TerminalSigner::from_seed(&[3; 32]);
    let small_order = format!("01{}", "00".repeat(31));
    format!(
        "terminal_id,hospital_code,department_code,public_key_hex,key_id_hex,approved_at_ms,revoked_at_ms\n\
         T-A,H33010200017,NEPH,{},{},1761926400000,\n\
         T-B,H33010200017,NEPH,{},{},1761926400000,1762000000000\n\
         T-C,H33010200017,NEPH,{},{},1761926400000,\n\
         T-D,H33010200017,NEPH,{small_order},{},1761926400000,\n\
         T-E,H33010200017,NEPH,{},{},1761926400000,1700000000000\n",
        a.public_key().to_hex(),
        a.key_id().to_hex(),
        b.public_key().to_hex(),
        b.key_id().to_hex(),
        c.public_key().to_hex(),
        a.key_id().to_hex(),
        a.key_id().to_hex(),
        TerminalSigner::from_seed(&[4; 32]).public_key().to_hex(),
        TerminalSigner::from_seed(&[4; 32]).key_id().to_hex(),
    )
}

both_backends!(
    terminals_import_validates_keys_and_is_idempotent,
    |store: &dyn Store| {
        use wuding_server::registry::import_terminals;
        let csv = terminals_csv();
        let r = import_terminals(store, csv.as_bytes()).unwrap();
        assert_eq!(r.rows, 5);
        assert_eq!(r.inserted, 2);
        let errors: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("line 4, column key_id_hex: is not the id"));
        assert!(errors[1].starts_with("line 5, column public_key_hex: the public key is refused"));
        assert_eq!(
            errors[2],
            "line 6, column revoked_at_ms: is before approved_at_ms"
        );
        let a = store.terminal("T-A").unwrap().unwrap();
        assert_eq!(a.status, "approved");
        let b = store.terminal("T-B").unwrap().unwrap();
        assert_eq!(
            (b.status.as_str(), b.revoked_at_ms, b.revoked_at_seq),
            ("revoked", Some(1_762_000_000_000), None)
        );
        let again = import_terminals(store, csv.as_bytes()).unwrap();
        assert_eq!((again.inserted, again.already_present), (0, 2));
        // A later file revokes T-A.
        let revoke = csv.replace(",1761926400000,\n", ",1761926400000,1762100000000\n");
        let later = import_terminals(store, revoke.as_bytes()).unwrap();
        assert_eq!(later.inserted, 1);
        assert_eq!(
            store.terminal("T-A").unwrap().unwrap().revoked_at_ms,
            Some(1_762_100_000_000)
        );
    }
);
