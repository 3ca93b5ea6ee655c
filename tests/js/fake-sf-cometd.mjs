// The official CometD client (npm cometd 9 + cometd-nodejs-client 2) against the fake
// Salesforce's Streaming API, the way a PushTopic subscriber uses it.
//
// Usage: node fake-sf-cometd.mjs <cometdUrl> <sessionId> <channel> <replayId>
//
// Long-polling only; handshake with `Authorization: Bearer <sessionId>` and ext.replay; subscribe
// to <channel> with ext.replay {<channel>: <last replay id seen, initially <replayId>>};
// re-subscribe after EVERY successful handshake (the JS client drops subscriptions on a
// rehandshake). Prints one JSON object per line:
//   {"kind":"handshake","successful":true}
//   {"kind":"subscribe","successful":true,"replay":-1}
//   {"kind":"event","replayId":N,"type":"created","sobject":{...}}
//   {"kind":"connect","successful":false,"error":"403::Unknown client","advice":{...}}
// Disconnects and exits when stdin closes.

import {adapt} from "cometd-nodejs-client";
import {CometD} from "cometd";

const [url, sessionId, channel, replayArg] = process.argv.slice(2);
if (!url || !sessionId || !channel || replayArg === undefined) {
    process.stderr.write("usage: fake-sf-cometd.mjs <cometdUrl> <sessionId> <channel> <replayId>\n");
    process.exit(2);
}

adapt();
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
let replayId = Number(replayArg);

const cometd = new CometD();
cometd.unregisterTransport("websocket");
cometd.unregisterTransport("callback-polling");
cometd.configure({url, requestHeaders: {Authorization: `Bearer ${sessionId}`}, logLevel: "warn"});

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
    print({kind: "handshake", successful: h.successful, error: h.error});
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
    }, (s) => print({kind: "subscribe", successful: s.successful, error: s.error, replay: asked}));
});

cometd.handshake();

process.stdin.resume();
process.stdin.on("end", () => {
    cometd.disconnect(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
});
