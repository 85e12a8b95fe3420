/** What every TEE module provides to the KBS client. */
import { TSM_ROOT } from "./tsm.ts";

/** `tee` strings as trustee's kbs-types spell them (only the ones this agent can produce). */
export type TeeType = "tdx" | "snp" | "tpm" | "sample";

export const TEE_TYPES: readonly TeeType[] = ["tdx", "snp", "tpm", "sample"];

/** Where the host facilities live; tests point these at temp dirs. */
export interface HostPaths {
  /** configfs-tsm mount point. */
  tsmRoot: string;
  /** Prefix for /dev and /sys lookups ("" on a real system). */
  sysRoot: string;
}

export const DEFAULT_PATHS: HostPaths = { tsmRoot: TSM_ROOT, sysRoot: "" };

export interface Attester {
  readonly tee: TeeType;
  /**
   * Evidence JSON bound to `digest` (the SHA-384 of the canonical runtime data, 48 bytes), laid
   * out exactly as trustee's verifier for this TEE parses it. Each TEE pads/truncates the digest
   * the way its verifier expects.
   */
  evidence(digest: Uint8Array): Promise<unknown>;
}
