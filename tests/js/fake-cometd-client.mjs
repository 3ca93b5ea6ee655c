// A real CometD client (npm cometd 9 + cometd-nodejs-client 2) against the fake streaming endpoint.
//
// Usage: node fake-cometd-client.mjs <url> <token> <channel> <replayId>
//
// Handshakes with `Authorization: Bearer <token>` over long-polling only, subscribes to <channel>
// with a replay extension (ext.replay = {<channel>: <last replay id seen, or the given one>}),
// re-subscribes after EVERY successful handshake (CometD JS drops subscriptions on rehandshake),
// and prints one JSON object per line on stdout:
//   {"kind":"handshake","successful":true,"clientId":"…"}
//   {"kind":"subscribe","successful":true,"replay":-1}
//   {"kind":"event","replayId":123,"type":"created","sobject":{…}}
//   {"kind":"connect","successful":false,"error":"403::Unknown client","advice":{…}}
// It disconnects and exits when stdin closes.

import {adapt} from "cometd-nodejs-client";
import {CometD} from "cometd";

const [url, token, channel, replayArg] = process.argv.slice(2);
if (!url || !token || !channel || replayArg === undefined) {
    process.stderr.write("usage: fake-cometd-client.mjs <url> <token> <channel> <replayId>\n");
    process.exit(2);
}

adapt();
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

let replayId = Number(replayArg);

const cometd = new CometD();
cometd.unregisterTransport("websocket");
cometd.unregisterTransport("callback-polling");
cometd.configure({
    url,
    requestHeaders: {Authorization: `Bearer ${token}`},
    logLevel: "warn",
});

cometd.registerExtension("replay", {
    outgoing: (message) => {
        if (message.channel === "/meta/handshake") {
            message.ext = {...message.ext, replay: true};
        } else if (message.channel === "/meta/subscribe") {
            message.ext = {...message.ext, replay: {[channel]: replayId}};
        }
        return message;
    },
});

cometd.addListener("/meta/connect", (m) => {
    if (!m.successful) {
        print({kind: "connect", successful: false, error: m.error, advice: m.advice});
    }
});

cometd.addListener("/meta/handshake", (h) => {
    print({kind: "handshake", successful: h.successful, clientId: h.clientId, error: h.error});
    if (!h.successful) {
        return;
    }
    const asked = replayId;
    cometd.subscribe(channel, (m) => {
        const event = m.data && m.data.event;
        if (event && typeof event.replayId === "number") {
            replayId = event.replayId;
        }
        print({kind: "event", replayId: event && event.replayId, type: event && event.type, sobject: m.data && m.data.sobject});
    }, (s) => {
        print({kind: "subscribe", successful: s.successful, error: s.error, replay: asked});
    });
});

cometd.handshake();

process.stdin.resume();
process.stdin.on("end", () => {
    cometd.disconnect(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
});
