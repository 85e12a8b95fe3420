/**
 * fde.toml (`[rootfs]`, `[delta]`) and global.toml (`[boot]`), following upstream cryptpilot's
 * schemas including its aliases (`[data]` for `[delta]`, `rw_overlay` for `delta_location`).
 */
import * as v from "valibot";
import { EncryptSchema, fieldPath, type ProviderConfig } from "./providers.ts";

export interface FdeConfig {
  rootfs: {
    /** Where the writable layer over the read-only rootfs lives. */
    deltaLocation: "disk" | "disk-persist" | "ram";
    deltaBackend: "dm-snapshot" | "overlayfs";
    /** Absent: the rootfs is not encrypted (still dm-verity protected). */
    encrypt?: ProviderConfig;
  };
  delta: { integrity: boolean; encrypt: ProviderConfig };
}

export interface GlobalConfig {
  boot: { verbose: boolean };
}

const DeltaLocation = v.picklist(["disk", "disk-persist", "ram"]);

const OTP_REJECTED =
  "the otp provider makes a new random key on every boot, so data on this volume does not survive " +
  "a reboot (the volume cannot be opened again with the old key). Use a persistent provider (kbs, " +
  "kms, oidc, tpm2 or exec); otp is meant for scratch data volumes";

const RootfsSchema = v.pipe(
  v.strictObject({
    delta_location: v.optional(DeltaLocation),
    rw_overlay: v.optional(DeltaLocation),
    delta_backend: v.optional(v.picklist(["dm-snapshot", "overlayfs"]), "dm-snapshot"),
    encrypt: v.optional(EncryptSchema),
  }),
  v.rawTransform(({ dataset, addIssue, NEVER }): FdeConfig["rootfs"] => {
    const t = dataset.value;
    if (t.delta_location !== undefined && t.rw_overlay !== undefined) {
      addIssue({
        message: "rw_overlay is an old name for delta_location; give only one",
        path: fieldPath(t, "rw_overlay"),
      });
      return NEVER;
    }
    if (t.encrypt?.type === "otp") {
      addIssue({ message: OTP_REJECTED, path: fieldPath(t, "encrypt") });
      return NEVER;
    }
    const out: FdeConfig["rootfs"] = {
      deltaLocation: t.delta_location ?? t.rw_overlay ?? "disk",
      deltaBackend: t.delta_backend,
    };
    if (t.encrypt !== undefined) out.encrypt = t.encrypt;
    return out;
  }),
);

const DeltaSchema = v.pipe(
  v.strictObject({ integrity: v.optional(v.boolean(), false), encrypt: EncryptSchema }),
  v.rawTransform(({ dataset, addIssue, NEVER }): FdeConfig["delta"] => {
    if (dataset.value.encrypt.type === "otp") {
      addIssue({ message: OTP_REJECTED, path: fieldPath(dataset.value, "encrypt") });
      return NEVER;
    }
    return dataset.value;
  }),
);

export const FdeSchema = v.pipe(
  v.strictObject({ rootfs: RootfsSchema, delta: v.optional(DeltaSchema), data: v.optional(DeltaSchema) }),
  v.rawTransform(({ dataset, addIssue, NEVER }): FdeConfig => {
    const { rootfs, delta, data } = dataset.value;
    if (delta !== undefined && data !== undefined) {
      addIssue({
        message: "[data] is an old name for [delta]; give only one",
        path: fieldPath(dataset.value, "data"),
      });
      return NEVER;
    }
    const effective = delta ?? data;
    if (effective === undefined) {
      addIssue({
        message: "missing the [delta] table (with [delta.encrypt.<provider>]) for the writable volume",
      });
      return NEVER;
    }
    return { rootfs, delta: effective };
  }),
);

export const GlobalSchema = v.pipe(
  v.strictObject({ boot: v.optional(v.strictObject({ verbose: v.optional(v.boolean(), false) })) }),
  v.transform((t): GlobalConfig => ({ boot: { verbose: t.boot?.verbose ?? false } })),
);
