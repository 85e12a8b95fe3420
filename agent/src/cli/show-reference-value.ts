import { notYetAvailable } from "./not-yet.ts";

export default notYetAvailable(
  ["show-reference-value"],
  "Print the boot measurements an attestation service should expect for a disk image",
);
