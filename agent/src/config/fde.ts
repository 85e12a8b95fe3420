/**
 * fde.toml (`[rootfs]`, `[delta]`) and global.toml (`[boot]`), following upstream cryptpilot's
 * schemas including its aliases (`[data]` for `[delta]`, `rw_overlay` for `delta_location`).
 */
import * as v from "valibot";
import { MAX_NTP_SERVERS, NTP_SERVER_FORMAT, parseNtpServer } from "../clock/servers.ts";
import { EncryptSchema, fieldPath, type ProviderConfig } from "./providers/index.ts";

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

/**
 * The TEEs the kbs providers of a configuration force (`tee = ...`), rootfs first; empty when the
 * evidence is left to detection. User data may not force one the initrd does not
 * (config/sources/select.ts), and the measurement register follows the first (boot/measure-config.ts).
 */
export function forcedTees(fde: FdeConfig | undefined): string[] {
  return [fde?.rootfs.encrypt, fde?.delta.encrypt].flatMap((p) =>
    p?.type === "kbs" && p.tee !== undefined ? [p.tee] : [],
  );
}

/** What a failed boot stage does once it has printed its error and closed what it opened. */
export const FAILURE_ACTIONS = ["poweroff", "reboot", "halt", "shell"] as const;
export type FailureAction = (typeof FAILURE_ACTIONS)[number];

export interface GlobalConfig {
  boot: {
    verbose: boolean;
    /**
     * "shell" (dracut's emergency shell) is a debugging opt-in: a root shell inside the TEE for
     * whoever holds the console, which in a confidential VM is the host.
     */
    onFailure: FailureAction;
    /** Seconds the failure stays on the console before the action. */
    failurePauseSecs: number;
    /** SNTP servers to set the clock from before the first key fetch (see clock/sync.ts). */
    ntpServers: string[];
  };
}

/** Defaults: power off, after a pause long enough to read the error on the console. */
export const DEFAULT_GLOBAL: GlobalConfig = {
  boot: { verbose: false, onFailure: "poweroff", failurePauseSecs: 10, ntpServers: [] },
};

/** Upper bound of failure_pause_secs: a typo must not park a failed machine for days. */
export const MAX_FAILURE_PAUSE_SECS = 3600;

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
  v.strictObject({
    boot: v.optional(
      v.strictObject({
        verbose: v.optional(v.boolean()),
        // Not in upstream's schema (which denies unknown fields): config dump writes them only
        // when they differ from the default, so a default bundle stays readable by upstream.
        on_failure: v.optional(v.picklist(FAILURE_ACTIONS)),
        failure_pause_secs: v.optional(
          v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_FAILURE_PAUSE_SECS)),
        ),
        ntp_servers: v.optional(
          v.pipe(
            v.array(
              v.pipe(
                v.string(),
                v.check((s) => parseNtpServer(s) !== undefined, `must be ${NTP_SERVER_FORMAT}`),
              ),
            ),
            v.maxLength(MAX_NTP_SERVERS, `at most ${MAX_NTP_SERVERS} servers`),
          ),
        ),
      }),
    ),
  }),
  v.transform(
    (t): GlobalConfig => ({
      boot: {
        verbose: t.boot?.verbose ?? DEFAULT_GLOBAL.boot.verbose,
        onFailure: t.boot?.on_failure ?? DEFAULT_GLOBAL.boot.onFailure,
        failurePauseSecs: t.boot?.failure_pause_secs ?? DEFAULT_GLOBAL.boot.failurePauseSecs,
        ntpServers: t.boot?.ntp_servers ?? DEFAULT_GLOBAL.boot.ntpServers,
      },
    }),
  ),
);
