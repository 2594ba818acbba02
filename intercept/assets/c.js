// leadproxy capture script. Wire formats: docs/capture-protocol.md.
// BuildScript replaces LP_CONFIG (JSON) and LP_JS (the js sources as
// functions) after tdewolff/minify has minified this file (script.go), so
// comments and long names cost nothing on the wire. The js sources sit
// outside the function, as its arguments: the minifier's one-letter local
// names ($, _, e...) must not capture the names a source uses. Every entry
// point is guarded: the script must never throw into the host page.
(function (w, d, L, C, F) {
  try {
    if (w.leadproxy) return;
    w.leadproxy = { version: "1" };
    if (!C.r.length) return;
    // Catches what excludedName in body.go does (and a little more):
    // passwords, CSRF tokens, card data.
    var X = /(^|[^a-z])(pass(word|wd)?|pwd)($|[^a-z])|csrf|xsrf|token|nonce|cvv|cvc|card.?n|credit.?card|cc.?(num|csc|exp)|security.?code|exp(iry|iration)?.?(date|month|year)/i;
    // seen: container (form, or document for form-less widgets) -> its
    // last submission, so a double click keeps one id. steps: form -> the
    // fields it had, for multi-step forms that drop earlier steps from the
    // DOM. pend: the last submit or click, until its request goes out.
    var seen = new WeakMap, steps = new WeakMap, vis = visit(), pend;

    function u64(s) {
      return s.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    }
    function b64(o) {
      return u64(btoa(unescape(encodeURIComponent(JSON.stringify(o)))));
    }
    // 15 random bytes: a 20-char url-safe id.
    function rid() {
      return u64(btoa(String.fromCharCode.apply(0, crypto.getRandomValues(new Uint8Array(15)))));
    }
    function cookie(n, v, age) {
      try {
        d.cookie = n + "=" + v + ";Max-Age=" + age + ";Path=/;SameSite=Lax" + (L.protocol == "https:" ? ";Secure" : "");
      } catch (e) {}
    }
    // The visit: kept 14 days, replaced when the URL carries a new campaign.
    function visit() {
      var u = {}, n, v;
      new URLSearchParams(L.search).forEach(function (x, k) {
        if (/^(utm_|gclid|yclid|fbclid)/.test(k)) n = 1;
        if (/^utm_/.test(k)) u[k.slice(4)] = x;
      });
      try {
        v = JSON.parse(decodeURIComponent(escape(atob(d.cookie.match(/(^|; )_lp_v=([^;]*)/)[2].replace(/-/g, "+").replace(/_/g, "/")))));
      } catch (e) {}
      if (n || !v || !v.id) {
        v = { id: rid(), l: L.href.slice(0, 800), r: d.referrer.slice(0, 800), u: u };
        cookie("_lp_v", b64(v), 1209600);
      }
      return v;
    }
    function secret(el) {
      return /^(password|file)$/.test(el.type) || X.test(el.name) || X.test(el.id) || /^cc-/i.test(el.getAttribute("autocomplete"));
    }
    // A selector source reads an input's value, any other element's text.
    function text(el) {
      return !el ? "" : el.matches("input,select,textarea") ? (secret(el) ? "" : el.value) : el.textContent.trim();
    }
    // The container's named fields, as a form post would carry them; the
    // names of secret ones go to o, for the server to drop from the post.
    function fields(c, o) {
      var f = Object.create(null), l = c.elements || c.querySelectorAll("input,select,textarea"), i, el, k, v;
      for (i = 0; i < l.length; i++) {
        el = l[i], k = el.name, v = el.value;
        if (!k || el.disabled || v == null || /^(submit|button|reset|image)$/.test(el.type) || /^(checkbox|radio)$/.test(el.type) && !el.checked) continue;
        if (secret(el)) {
          o.push(k);
          continue;
        }
        v = v.slice(0, 8192);
        f[k] = k in f ? (f[k] && v ? f[k] + ", " + v : f[k] + v) : v;
      }
      return f;
    }
    // Values only the browser knows, by role: selector and js sources, then
    // email/phone by input type for the roles that have no source.
    function computed(R, c, el, err) {
      var x = {};
      R.s.forEach(function (s) {
        try {
          var v = s[1] == "js" ? F[s[2]].call(el) : text(c.querySelector(s[2]) || d.querySelector(s[2]));
          if (v != null && v !== "") x[s[0]] = String(v);
        } catch (e) {
          err.push(s[1] + " source " + s[0] + " threw: " + e);
        }
      });
      R.d.forEach(function (role) {
        var l = c.querySelectorAll("input[type=" + (role == "phone" ? "tel" : role) + "]"), i;
        // "_": an input mask the visitor has not finished.
        for (i = 0; i < l.length && !x[role]; i++) if (l[i].value && !/_/.test(l[i].value) && !secret(l[i])) x[role] = l[i].value;
      });
      return x;
    }
    // The marker must fit one cookie: drop the longest values until it does.
    function marker(m) {
      var v = b64(m), k;
      while (v.length > 3794) {
        k = Object.keys(m.x).sort(function (a, b) { return m.x[b].length - m.x[a].length; })[0];
        if (!k) return;
        delete m.x[k];
        v = b64(m);
      }
      cookie("_lp_s", v, 60);
    }
    function send(j) {
      var u = C.p + "/collect";
      try {
        if (navigator.sendBeacon(u, new Blob([j], { type: "text/plain" }))) return;
      } catch (e) {}
      G(u, { method: "POST", body: j, keepalive: j.length < 6e4 }).catch(function () {});
    }
    // Remember a form's fields: a later step may remove them from the DOM.
    function remember(c) {
      if (c && c.elements) steps.set(c, Object.assign(steps.get(c) || {}, fields(c, [])));
    }
    // What an attempt on container c sends now: its fields, plus those of
    // earlier steps no longer in the form.
    function now(p) {
      // (Only forms have steps: a document container never loops.)
      var c = p.c, o = [], f = fields(c, o), a = steps.get(c) || {}, k, err = [];
      for (k in a) if (!(k in f) && !c.elements.namedItem(k)) f[k] = a[k];
      return { f: f, o: o, x: computed(p.R, c, p.el, err), err: err };
    }
    // The submission id: kept for a repeat of the same content on the same
    // container within 5 s (a double click), new otherwise.
    function sid(p, v) {
      var q = seen.get(p.c), t = Date.now(), j = JSON.stringify(v.f);
      if (!q || q.r != p.R.i || q.f != j || t - q.t > 5000) seen.set(p.c, q = { s: rid(), r: p.R.i, f: j });
      q.t = t;
      return q;
    }
    // path: the POST path for the marker, "" when unknown (click), null for
    // no marker (the request will not come to this origin). t: the rule's
    // token, signed by the server that served this script.
    function mark(p, v, q) {
      if (p.path != null) marker({ v: 1, r: p.R.i, t: p.R.t, s: q.s, a: p.path, c: d.characterSet, x: Object.assign({}, v.x), o: v.o });
    }
    // A submit or click: the page's own validation may still refuse it and
    // send nothing. The marker is set now, so a post that follows carries
    // it; the report waits until the attempt goes out (out).
    function attempt(R, c, el, path, e) {
      if (el.closest("[data-leadproxy-ignore]")) return;
      pend = { R: R, c: c, el: el, path: path, e: e, t: Date.now() };
      var v = now(pend);
      mark(pend, v, sid(pend, v));
    }
    // The pending attempt goes out with the values it carries now (v): the
    // marker is set again and the report is returned, to send when the
    // request has succeeded.
    function out(v) {
      var p = pend, q, j;
      v = v || now(p);
      q = sid(p, v);
      pend = 0;
      mark(p, v, q);
      j = JSON.stringify({ v: 1, r: p.R.i, s: q.s, hp: "", page: L.href, c: d.characterSet, f: v.f, x: v.x, vis: vis, err: v.err });
      return function () {
        if (j != q.j) send(q.j = j);
      };
    }
    // A request the page sends while an attempt is pending (for a minute,
    // as long as its marker lives) is that attempt if its body carries one
    // of the attempt's values (an analytics beacon does not). Returns the
    // report to send on success, if it is.
    function going(b) {
      var p = pend, s, v, k, l, t;
      if (!p || b == null || Date.now() - p.t > 6e4) return;
      // A string or URLSearchParams as sent, FormData by its values; other
      // bodies (Blob, ArrayBuffer) read as "[object …]" and match nothing.
      s = b instanceof FormData ? "" : "" + b;
      if (!s) b.forEach(function (x) { s += x + "\n"; });
      try {
        s += decodeURIComponent(s.replace(/\+/g, " "));
      } catch (e) {}
      v = now(p);
      l = Object.values(v.f).concat(Object.values(v.x));
      t = s.replace(/\D/g, "");
      for (k = 0; k < l.length; k++) {
        if (l[k].length > 3 && s.indexOf(l[k]) >= 0 || (l[k] = l[k].replace(/\D/g, "")).length > 6 && t.indexOf(l[k]) >= 0) return out(v);
      }
    }
    // The first rule of mechanism k ("s" submit, "c" click) around element t;
    // a selector this browser rejects skips its rule only.
    function match(t, k) {
      for (var i = 0, R, e; i < C.r.length; i++) {
        R = C.r[i];
        try {
          if (R.m == k && (e = t.closest(R.q))) return [R, e];
        } catch (x) {}
      }
    }
    function onSubmit(e) {
      var f = e.target, s = e.submitter, h = match(f, "s"), u, m;
      remember(f);
      if (!h) return;
      // getAttribute: an input named "action" or "method" shadows the property.
      u = new URL((s && s.getAttribute("formaction")) || f.getAttribute("action") || "", d.baseURI);
      m = (s && s.getAttribute("formmethod")) || f.getAttribute("method") || "";
      attempt(h[0], f, f, u.origin == L.origin && /^post$/i.test(m) ? u.pathname : null, e);
    }
    function onClick(e) {
      var t = e.composedPath()[0], h = t.closest && match(t, "c");
      if (h) attempt(h[0], h[1].form || h[1].closest("form") || d, h[1], "", e);
    }
    // formdata: the browser builds a form's data to send it (a submit no
    // handler cancelled, form.submit()), or the page does (new FormData).
    // Either way the pending attempt goes out, unless its event was
    // cancelled: then the page's own request decides (going).
    function onData(e) {
      if (pend && pend.c == e.target && !(pend.e && pend.e.defaultPrevented)) out()();
    }
    function onChange(e) {
      remember(e.target.form);
    }
    function guard(fn) {
      return function (e) {
        try {
          return fn.apply(this, arguments);
        } catch (x) {}
      };
    }
    // Capture phase on window and on every shadow root: runs before the
    // page's own handlers, covers forms added later, and sees the submit,
    // formdata and change events that do not cross a shadow boundary.
    function listen(t) {
      t.addEventListener("submit", guard(onSubmit), true);
      t.addEventListener("formdata", guard(onData), true);
      t.addEventListener("change", guard(onChange), true);
    }
    function scan(r) {
      r.querySelectorAll("*").forEach(function (e) {
        if (e.shadowRoot) listen(e.shadowRoot), scan(e.shadowRoot);
      });
    }
    listen(w);
    w.addEventListener("click", guard(onClick), true);
    var E = Element.prototype, A = E.attachShadow, P = HTMLFormElement.prototype, S = P.submit, XP = XMLHttpRequest.prototype, XS = XP.send, G = w.fetch;
    // Shadow roots made later (Lit, Stencil, Shoelace), and the open ones
    // components made before this script ran.
    if (A) E.attachShadow = function () {
      var r = A.apply(this, arguments);
      guard(listen)(r);
      return r;
    };
    scan(d);
    // form.submit() fires no submit event, only formdata; old sites and
    // jQuery use it.
    P.submit = function () {
      guard(onSubmit)({ target: this });
      return S.apply(this, arguments);
    };
    // The page's own requests: the attempt went out if one carries its
    // values, and succeeded unless the site answered 4xx/5xx.
    XP.send = function (b) {
      var x = this, g = guard(going)(b);
      if (g) x.addEventListener("loadend", function () { x.status < 400 && g(); });
      return XS.apply(x, arguments);
    };
    if (G) w.fetch = function (u, o) {
      var g = guard(going)(o && o.body), r = G.apply(this, arguments);
      if (g) r.then(function (x) { x.status < 400 && g(); }, g);
      return r;
    };
  } catch (e) {}
})(window, document, location, LP_CONFIG, LP_JS);
