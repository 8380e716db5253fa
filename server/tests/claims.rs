//! Claims import on both backends: precise row errors, good rows kept,
//! idempotent re-import, the national fee-detail mapping with exact yuan.

mod common;

use wuding_server::claims::{Mapping, import};
use wuding_server::store::Store;

const STANDARD: &str = "\
claim_id,insured_id,hospital_code,department_code,doctor_id,service_date,service_code,service_kind,quantity,amount_fen,drug_code,dose
C-0001,330102195403170012,H33010200017,NEPH-HD,D0107,2026-11-16,003105010010000,HD,1,42000,,
C-0002,330102195403170012,H33010200017,NEPH-HD,D0107,2026-11-31,003105010010000,HD,1,42000,,
C-0003,330102195403170012,H33010200017,NEPH-HD,D0107,2026-11-18,003105010040000,HDX,1,61000,,
C-0004,330106196811020025,H33010200017,ONC-DAY,D0311,2026-11-18,311201001,CHEMO,1,41450,XL01XA01,75mg
C-0005,330106196811020025,H33010200017,ONC-DAY,D0311,2026-11-19,311201001,CHEMO,1,41450,XL01XA01,seventy-five mg
C-0006,330106196811020025,H33010200017,ONC-DAY,D0311,2026-11-20,311201001,CHEMO,one,41450,,
C-0007,330102195403170012,H33010200017,NEPH-HD,D0107,2026-11-20,003105010010000,HD,1,42000,,
";

both_backends!(
    standard_layout_keeps_good_rows_and_names_bad_ones,
    |store: &dyn Store| {
        let report = import(
            store,
            STANDARD.as_bytes(),
            &Mapping::standard(),
            "claims.csv",
            |_| {},
        )
        .unwrap();
        assert_eq!(report.rows, 7);
        assert_eq!(report.inserted, 3);
        let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            vec![
                "line 3, column service_date: `2026-11-31` is not a date YYYY-MM-DD",
                "line 4, column service_kind: `HDX` is not one of HD, HDF, HF, HP, PD, CHEMO, RADIO, ANTIREJECT",
                "line 6, column dose: field `dose` not a decimal number with at most three fractional digits",
                "line 7, column quantity: `one` is not a whole number",
            ]
        );
        // Importing the same file again changes nothing.
        let again = import(
            store,
            STANDARD.as_bytes(),
            &Mapping::standard(),
            "claims.csv",
            |_| {},
        )
        .unwrap();
        assert_eq!((again.inserted, again.already_present), (0, 3));
        assert_eq!(store.claim_count().unwrap(), 3);
    }
);

const NATIONAL: &str = "\
psn_no,mdtrt_id,med_type,fee_ocur_time,med_list_codg,medins_list_codg,cnt,pric,det_item_fee_sumamt,bilg_dept_codg,bilg_dr_codg,fixmedins_code
330102195403170012,MD2026111600001,14,2026-11-16 08:05:00,003105010010000,L-HD-01,1.0000,420.00,420.00,NEPH-HD,D0107,H33010200017
330102195403170012,MD2026111800001,14,2026-11-18 08:01:00,003105010040000,L-HDF-01,1.0000,610.50,610.5,NEPH-HD,D0107,H33010200017
330102195403170012,MD2026112000001,14,2026-11-20 08:01:00,003105010040000,L-HDF-01,1.0000,610.50,610.505,NEPH-HD,D0107,H33010200017
330102195403170012,MD2026112000002,14,2026-11-20 09:01:00,999999999,L-X,1.0000,1.00,1.00,NEPH-HD,D0107,H33010200017
";

both_backends!(
    national_fee_detail_mapping_converts_yuan_exactly,
    |store: &dyn Store| {
        let text = include_str!("../mappings/national-fee-detail.toml");
        let mapping = Mapping::parse(text).unwrap();
        let report = import(
            store,
            NATIONAL.as_bytes(),
            &mapping,
            "fee-detail.csv",
            |_| {},
        )
        .unwrap();
        assert_eq!(report.inserted, 2, "{:?}", report.errors);
        let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            vec![
                "line 4, column det_item_fee_sumamt: `610.505` is not an amount in yuan with at most two decimals",
                "line 5, column med_list_codg: code `999999999` is not in the mapping's service_kinds table",
            ]
        );
        assert_eq!(store.claim_count().unwrap(), 2);
    }
);

#[test]
fn a_mapping_must_map_every_required_field() {
    let err = Mapping::parse("name = \"x\"\n[fields]\nclaim_id = \"id\"\n").unwrap_err();
    assert!(
        err.to_string().contains("`insured_id` is not mapped"),
        "{err}"
    );
    let err = Mapping::parse("name = \"x\"\n[fields]\ncolour = \"c\"\n").unwrap_err();
    assert!(
        err.to_string().contains("unknown claim field `colour`"),
        "{err}"
    );
}

#[test]
fn a_file_without_a_mapped_column_is_refused_whole() {
    let db = common::sqlite();
    let err = import(
        &*db.store,
        "a,b\n1,2\n".as_bytes(),
        &Mapping::standard(),
        "x.csv",
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("no column `claim_id`"), "{err}");
}
