/**
 * Which FDE configuration a boot uses (issue #17), as upstream's copy_config.rs orders it:
 *
 *   user data starting with #cryptpilot-fde-config ──valid, has [fde], measured──> the bundle
 *          │ absent / not a bundle / unreadable / malformed / no [fde] / not measured
 *          v
 *   the initrd's /etc/cryptpilot (part of the measured boot)
 *
 * Fail closed: user data is host-supplied and outside measured boot, so it is used only after
 * its hash is in a register the verifier replays; every other outcome uses the initrd's
 * configuration and says why on the console. Read once, in the first stage (handoff.ts).
 */
import { formatError } from "../../errors.ts";
import { BUNDLE_HEADER, type ParsedBundle, readBundle } from "../bundle.ts";
import { forcedTees } from "../fde.ts";
import type { LoadedConfig } from "../index.ts";
import type { UserDataSource } from "./types.ts";

/** Measures a bundle's hash: the register it went into, or why it could not be measured. */
export type MeasureBundle = (bundle: ParsedBundle) => Promise<{ register: string } | { refused: string }>;

export interface SelectedConfig {
  config: LoadedConfig;
  /** "initrd" or the user-data source's name. */
  source: string;
  /** The user data chosen (with its measured hash); absent when the initrd's config is used. */
  userData?: { text: string; bundle: ParsedBundle; register: string };
}

export interface SelectOptions {
  /** The initrd's configuration (already loaded: it is the fallback and decides if FDE is on). */
  initrd: LoadedConfig;
  sources: readonly UserDataSource[];
  measure: MeasureBundle;
  /** Console lines: why user data was not used (warn), which source was (info). */
  warn: (line: string) => void;
  info: (line: string) => void;
}

export async function selectConfig(o: SelectOptions): Promise<SelectedConfig> {
  const initrd: SelectedConfig = { config: o.initrd, source: "initrd" };
  // A system the initrd does not configure for FDE stays so: user data cannot turn FDE on for
  // an image that was not converted, and such a boot does not wait for a metadata service.
  if (!o.initrd.fde) return initrd;
  const ignore = (why: string): SelectedConfig => {
    o.warn(`${why}; using the initrd's configuration`);
    return initrd;
  };
  for (const source of o.sources) {
    let text: string;
    try {
      const r = await source.read();
      if ("absent" in r) {
        o.info(`${source.name}: ${r.absent}`);
        continue;
      }
      text = r.text;
    } catch (err) {
      return ignore(`${source.name} could not be read: ${formatError(err)}`);
    }
    if (!text.startsWith(BUNDLE_HEADER)) {
      o.info(
        `${source.name} is not a cryptpilot configuration bundle (no "${BUNDLE_HEADER}" first line); not used`,
      );
      continue;
    }
    let bundle: ParsedBundle;
    try {
      bundle = readBundle(source.name, text);
    } catch (err) {
      return ignore(`${source.name} holds a configuration bundle that is not valid: ${formatError(err)}`);
    }
    // Dropping [fde] would boot the image without its FDE checks, and a shell on failure is a
    // root shell for whoever holds the console (the host): both only from the measured initrd.
    if (!bundle.bundle.fde)
      return ignore(`${source.name}: the bundle has no [fde] tables; user data cannot turn FDE off`);
    if (bundle.bundle.global.boot.onFailure === "shell" && o.initrd.global.boot.onFailure !== "shell")
      return ignore(
        `${source.name}: the bundle sets [global.boot] on_failure = "shell"; only the initrd's configuration can enable the emergency shell`,
      );
    // The evidence is the guest's word to the broker: a host-written bundle that forced TPM (a
    // host-provided vTPM) or sample evidence on a TDX/SNP guest would also pick the register its
    // own hash goes into. Only the measured initrd may force a TEE; the bundle may leave it to
    // detection or repeat what the initrd forces.
    const allowedTees = forcedTees(o.initrd.fde);
    const tee = forcedTees(bundle.bundle.fde).find((t) => !allowedTees.includes(t));
    if (tee !== undefined)
      return ignore(
        `${source.name}: the bundle forces the kbs evidence tee = "${tee}", which the initrd's configuration does not; only the initrd's configuration can choose the TEE evidence`,
      );
    const measured = await o.measure(bundle).catch((err: unknown) => ({ refused: formatError(err) }));
    if ("refused" in measured) {
      return ignore(
        `${source.name}: the configuration bundle (sha384 ${bundle.sha384}) could not be measured (${measured.refused}); an unmeasured external configuration is never used`,
      );
    }
    o.info(
      `using the configuration bundle from ${source.name} (sha384 ${bundle.sha384}, measured into ${measured.register})`,
    );
    const config: LoadedConfig = { global: bundle.bundle.global, fde: bundle.bundle.fde };
    return { config, source: source.name, userData: { text, bundle, register: measured.register } };
  }
  return initrd;
}
