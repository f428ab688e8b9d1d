// webrtc-polyfill's interface on @roamhq/wrtc, loaded on the first use: libwebrtc costs ~12 MB of
// resident memory at import, and a node seeds over WebRTC only when a ws:// tracker is announced to.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
let wrtc
const load = () => (wrtc ??= require('@roamhq/wrtc'))

// `new` on these returns @roamhq/wrtc's own object (a constructor may return one).
export class RTCPeerConnection {
  constructor(...args) {
    return new (load().RTCPeerConnection)(...args)
  }
}
export class RTCSessionDescription {
  constructor(...args) {
    return new (load().RTCSessionDescription)(...args)
  }
}
export class RTCIceCandidate {
  constructor(...args) {
    return new (load().RTCIceCandidate)(...args)
  }
}
export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate }
