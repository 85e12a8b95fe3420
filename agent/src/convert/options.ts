/** What `convert` is asked to do: built by cli/convert.ts, read by the plan and every step. */
import type { SealPolicy } from "../tpm/seal.ts";
import type { Assets } from "./guest.ts";
import type { ConvertHost } from "./guest-arch.ts";

export interface ConvertOptions {
  /** Source image (raw/qcow2) or block device. */
  input: string;
  /** Output image; equal to input in --device mode. */
  output: string;
  device: boolean;
  configDir: string;
  /** Undefined: rootfs not encrypted (still verity-protected). */
  rootfsKey?: Uint8Array;
  rootPartNum?: number;
  bootPartSize: number;
  uki: boolean;
  ukiAppendCmdline: string;
  assets: Assets;
  /**
   * --device mode: also zero the PV's unallocated space (the old root's freed blocks, the delta's
   * space from the first boot on). Without it those bytes are left as they were, as upstream does.
   * --in/--out ignores it: the output is a new file with nothing old in it.
   */
  wipeFreedSpace?: boolean;
  /**
   * --tpm2-enroll: seal a new random rootfs key to this TPM under this policy (the TPM's current
   * PCR values) and add it as a keyslot with a cryptpilot-tpm2 token; rootfsKey stays as recovery.
   */
  tpm2Enroll?: { tcti: string; policy: SealPolicy };
  /** The host's architecture and binfmt_misc, for the guest-architecture check; default this host's. */
  host?: ConvertHost;
}
