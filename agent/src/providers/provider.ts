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
   * Called by the boot code right after it luksFormat-ted a fresh volume (first boot of delta)
   * with the key from getKey(), before the volume is marked ready. The tpm2 provider stores its
   * sealed copy of that key in the new LUKS2 header here. Providers that keep nothing omit it.
   */
  afterFormat?(device: string): Promise<void>;
}

/** What a provider factory gets besides its own config table. */
export interface ProviderContext {
  /** Which volume the key is for ("rootfs", "delta", or a data volume's name): for messages only. */
  volume: string;
  /** Directory the config came from, to resolve relative paths (certificates, key files). */
  configDir: string;
  /**
   * The volume's LUKS2 device, for providers that keep data in its header (tpm2 token). When
   * absent, the tpm2 provider uses the LV path /dev/mapper/cryptpilot-<volume>.
   */
  device?: string;
}
