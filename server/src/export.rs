//! Findings exported for auditors: CSV (one row per finding, the layout of
//! `findings --format csv`) and XLSX (one sheet, bilingual header, amounts
//! in yuan, autofilter, frozen header). The rows are written as given:
//! callers that show them to someone without the right to see insured ids
//! mask them first (`casework::mask_id`).

use rust_xlsxwriter::{Format, Workbook, XlsxError};

use crate::store::FindingRow;

/// The CSV columns of `findings --format csv`.
pub const CSV_HEADER: &[&str] = &[
    "id",
    "rule_id",
    "severity",
    "date",
    "hospital_code",
    "insured_id",
    "claim_ids",
    "record_ids",
    "amount_fen",
    "status",
];

/// The XLSX header row: Chinese and English.
pub const XLSX_HEADER: &[&str] = &[
    "编号 ID",
    "规则 Rule",
    "严重程度 Severity",
    "日期 Date",
    "医院 Hospital",
    "参保人 Insured ID",
    "申报明细 Claim lines",
    "签名记录 Records",
    "金额(元) Amount (yuan)",
    "状态 Status",
    "说明 Explanation (zh)",
    "Explanation (en)",
];

/// Writes findings as CSV: one row per finding, lists `;`-separated,
/// amounts in fen.
pub fn findings_csv(rows: &[FindingRow], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_HEADER)?;
    for f in rows {
        w.write_record([
            f.id.as_str(),
            &f.rule_id,
            &f.severity,
            f.service_date.as_deref().unwrap_or(""),
            f.hospital_code.as_deref().unwrap_or(""),
            f.insured_id.as_deref().unwrap_or(""),
            &f.claim_ids.join(";"),
            &f.record_ids.join(";"),
            &f.amount_fen.to_string(),
            &f.status,
        ])?;
    }
    w.flush()
}

/// Findings as an XLSX workbook: one sheet `findings`, the bilingual header
/// row frozen and filtered, amounts as numbers in yuan with two decimals.
pub fn findings_xlsx(rows: &[FindingRow]) -> Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("findings")?;
    let bold = Format::new().set_bold();
    let yuan = Format::new().set_num_format("0.00");
    for (col, title) in XLSX_HEADER.iter().enumerate() {
        sheet.write_string_with_format(0, col as u16, *title, &bold)?;
    }
    for (i, f) in rows.iter().enumerate() {
        let row = i as u32 + 1;
        sheet.write_string(row, 0, &f.id)?;
        sheet.write_string(row, 1, &f.rule_id)?;
        sheet.write_string(row, 2, &f.severity)?;
        sheet.write_string(row, 3, f.service_date.as_deref().unwrap_or(""))?;
        sheet.write_string(row, 4, f.hospital_code.as_deref().unwrap_or(""))?;
        sheet.write_string(row, 5, f.insured_id.as_deref().unwrap_or(""))?;
        sheet.write_string(row, 6, f.claim_ids.join(";"))?;
        sheet.write_string(row, 7, f.record_ids.join(";"))?;
        sheet.write_number_with_format(row, 8, f.amount_fen as f64 / 100.0, &yuan)?;
        sheet.write_string(row, 9, &f.status)?;
        sheet.write_string(row, 10, &f.explanation_zh)?;
        sheet.write_string(row, 11, &f.explanation_en)?;
    }
    let last_col = XLSX_HEADER.len() as u16 - 1;
    sheet.autofilter(0, 0, rows.len() as u32, last_col)?;
    sheet.set_freeze_panes(1, 0)?;
    for (col, width) in [
        (0u16, 34.0),
        (1, 22.0),
        (5, 20.0),
        (6, 28.0),
        (7, 40.0),
        (8, 14.0),
        (10, 48.0),
        (11, 48.0),
    ] {
        sheet.set_column_width(col, width)?;
    }
    book.save_to_buffer()
}
