// Live updates: GET /api/v1/events (Server-Sent Events) read with fetch, so
// the request carries the session's bearer token (EventSource cannot send an
// Authorization header). Each event goes to onEvent(kind, data, id); a
// `resync` event (the engine could not resume from Last-Event-ID) and every
// reconnection call onResync, which refetches the view. Where the route does
// not exist (an engine without the event stream: 404) or while the stream is
// down, the page falls back to a slow refresh of the visible view.

import { api } from './api.js';

export class Live {
  constructor({ onEvent, onResync, onStatus }) {
    this.onEvent = onEvent;
    this.onResync = onResync;
    this.onStatus = onStatus;
    this.lastId = null;
    this.mode = 'connecting'; // live | polling | connecting
    this.ctrl = null;
    this.backoff = 1000;
    this.gen = 0; // a restart abandons the older connection's callbacks
  }

  get stopped() {
    return this.gen < 0;
  }

  start() {
    this.gen = Math.abs(this.gen) + 1;
    this.connect(this.gen);
  }

  stop() {
    this.gen = -(Math.abs(this.gen) + 1);
    if (this.ctrl) this.ctrl.abort();
  }

  restart() {
    this.stop();
    this.lastId = null;
    this.start();
  }

  setMode(mode, detail) {
    this.mode = mode;
    this.onStatus(mode, detail);
  }

  async connect(gen) {
    if (gen !== this.gen) return;
    this.ctrl = new AbortController();
    const headers = api.headers({ Accept: 'text/event-stream' });
    if (this.lastId) headers['Last-Event-ID'] = this.lastId;
    let res;
    try {
      res = await fetch('/api/v1/events', { headers, signal: this.ctrl.signal, cache: 'no-store', redirect: 'error' });
    } catch (e) {
      if (gen !== this.gen) return;
      return this.retry(`event stream: ${e.message}`, gen);
    }
    if (gen !== this.gen) return;
    if (res.status === 404 || res.status === 405) {
      // No event stream on this engine: refresh slowly; look again later.
      this.setMode('polling', 'this engine has no event stream');
      return this.later(60000, gen);
    }
    if (res.status === 401) {
      if (api.onUnauthorized && headers.Authorization === api.headers().Authorization) api.onUnauthorized('the event stream needs a token');
      this.setMode('polling', 'not signed in');
      return;
    }
    if (!res.ok || !res.body) {
      let msg = `${res.status}`;
      try {
        msg = (await res.json()).error.message;
      } catch {
        /* not JSON */
      }
      return this.retry(`event stream refused: ${msg}`, gen);
    }
    this.backoff = 1000;
    this.setMode('live');
    // Anything may have changed while no stream was open.
    this.onResync();
    try {
      await this.read(res.body, gen);
    } catch (e) {
      if (gen !== this.gen) return;
      return this.retry(`event stream broke: ${e.message}`, gen);
    }
    if (gen === this.gen) this.retry('event stream ended', gen);
  }

  retry(detail, gen) {
    this.setMode('polling', `${detail}; reconnecting`);
    this.later(this.backoff, gen);
    this.backoff = Math.min(this.backoff * 2, 15000);
  }

  later(ms, gen) {
    setTimeout(() => this.connect(gen), ms);
  }

  async read(body, gen) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let ev = { id: null, kind: 'message', data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done || gen !== this.gen) return;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (ev.data.length) this.dispatch(ev);
          ev = { id: null, kind: 'message', data: [] };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'id') ev.id = val;
        else if (field === 'event') ev.kind = val;
        else if (field === 'data') ev.data.push(val);
      }
    }
  }

  dispatch(ev) {
    if (ev.id) this.lastId = ev.id;
    let data = null;
    try {
      data = JSON.parse(ev.data.join('\n'));
    } catch {
      data = ev.data.join('\n');
    }
    if (ev.kind === 'resync') this.onResync();
    else this.onEvent(ev.kind, data, ev.id);
  }
}
