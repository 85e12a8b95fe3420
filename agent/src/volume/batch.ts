/**
 * Running one operation over several volumes: each volume's failure is reported and the others
 * still run; the exit status is 1 when any failed.
 */
import type { VolumeConfig } from "../config/volume.ts";
import { formatError } from "../errors.ts";
import { log, print } from "../log.ts";

export async function forEachVolume(
  volumes: VolumeConfig[],
  verbose: boolean,
  operation: (vol: VolumeConfig) => Promise<string>,
): Promise<{ failed: string[] }> {
  const failed: string[] = [];
  for (const vol of volumes) {
    try {
      print(`${vol.volume}: ${await operation(vol)}`);
    } catch (err) {
      failed.push(vol.volume);
      const message = formatError(err, verbose);
      log.error(message.startsWith(`volume ${vol.volume}`) ? message : `volume ${vol.volume}: ${message}`);
    }
  }
  if (failed.length > 0 && volumes.length > 1) {
    log.error(`${failed.length} of ${volumes.length} volume(s) failed: ${failed.join(", ")}`);
  }
  return { failed };
}
