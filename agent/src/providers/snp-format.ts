/**
 * The `snp_evidence_format` setting of the kbs provider (kept free of imports so the config
 * loader can use it without pulling in the attesters). Which trustee's serde field names SEV-SNP
 * evidence uses where the two differ, the TCB_VERSION of Turin reports (snp.ts explains):
 * "coco" = virtee/sev 7 as in confidential-containers/trustee, "openanolis" = sev 4.0.0 as in
 * openanolis/trustee. Milan and Genoa reports give the same JSON either way, accepted by both.
 */
export type SnpEvidenceFormat = "coco" | "openanolis";
export const SNP_EVIDENCE_FORMATS = ["coco", "openanolis"] as const satisfies readonly SnpEvidenceFormat[];
export const DEFAULT_SNP_EVIDENCE_FORMAT: SnpEvidenceFormat = "coco";
