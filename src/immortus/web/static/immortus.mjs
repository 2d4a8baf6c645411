/*! immortus.mjs: immortus.js as an ES module (`import Immortus, {verify} from ".../immortus.mjs"`).
 * The code lives in immortus.js, a classic script that defines `globalThis.Immortus`. */
import './immortus.js';

const Immortus = globalThis.Immortus;
export default Immortus;
export const {
  version, create, verify, batch, cancel, mount, mountGroup, JobElement, GroupElement, ImmortusError,
} = Immortus;
