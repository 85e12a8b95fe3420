/**
 * The one interface every key provider implements. A provider is built from its (already
 * validated) config table and asked for a key; it never logs or returns anything but the key.
 */
export interface KeyProvider {
  /** Provider name as written in the config table: "exec", "otp", "kbs", "kms", "oidc", "tpm2". */
  readonly name: string;
  /** One line for logs, e.g. "kbs http://10.0.2.2:8080 resource default/key/rootfs". No secrets. */
  describe(): string;
  /**
   * True when every call yields a fresh random key (otp): the volume cannot survive a reboot and
   * is re-formatted on every open.
   */
  readonly temporary: boolean;
  /** Fetch (or unseal, or generate) the volume key. Throws KeyProviderError with the reason. */
  getKey(): Promise<Uint8Array>;
  /**
   * After getKey(): the LUKS2 keyslot that key opens, when the provider knows it (the tpm2 token
   * records it). The volume is then opened with that keyslot only, so cryptsetup does not first
   * run the KDF of every keyslot in front of it (e.g. a slow argon2id recovery passphrase).
   * Providers that do not know it omit the method: cryptsetup tries every keyslot.
   */
  keySlot?(): number | undefined;
  /**
   * Called by the code that luksFormat-ted a volume (boot: delta on first boot; `volume init`)
   * with the key from getKey(), right after the format and before the volume is marked ready;
   * only on a provider created with `freshKey: "allowed"`. The tpm2 provider stores its sealed
   * copy of that key in the new LUKS2 header here (the key then opens keyslot 0). Providers that
   * keep nothing omit it.
   */
  afterFormat?(device: string): Promise<void>;
}

/**
 * May a provider hand out a NEW key for a volume that holds none yet? Only the caller knows
 * whether it will format the volume with that key, so it says so (ProviderContext.freshKey):
 * - "allowed": the volume is formatted with a new key when it is not initialised yet. The caller
 *   luksFormats it with the key and then calls afterFormat (boot: the delta; `volume init`), or
 *   only checks that such a key can be made and drops it (`config check` and `fetch-key` of the
 *   delta, `volume check`: they see what the boot or `volume init` would).
 * - "never": the volume must already hold its key (the rootfs, converted with its key on the
 *   build host; `volume open`). A provider that keeps its key in the volume (tpm2) fails
 *   instead of making a key that nothing stores, and refuses afterFormat.
 * Providers whose key lives elsewhere (a broker, KMS, a command) return the same key either way.
 */
export type FreshKey = "allowed" | "never";

/**
 * What the boot stage passes for its two volumes, and what `config check` and `fetch-key` pass
 * to see what the boot sees: the rootfs is never formatted at boot, the delta on first boot.
 */
export const BOOT_FRESH_KEY = { rootfs: "never", delta: "allowed" } as const satisfies Record<
  string,
  FreshKey
>;

/** What a provider factory gets besides its own config table. */
export interface ProviderContext {
  /** Whether the caller formats the volume with a new key when it has none: see FreshKey. */
  freshKey: FreshKey;
  /**
   * Which volume the key is for ("rootfs", "delta", or a data volume's name): for messages, and
   * tpm2's default device. Never a policy: what a provider may do is in freshKey.
   */
  volume: string;
  /** Directory the config came from, to resolve relative paths (certificates, key files). */
  configDir: string;
  /**
   * The volume's LUKS2 device, for providers that keep data in its header (tpm2 token). When
   * absent, the tpm2 provider uses the LV path /dev/mapper/cryptpilot-<volume>.
   */
  device?: string;
}
