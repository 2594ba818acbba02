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
    // Container (form, or document for form-less widgets) -> its recent
    // submission, so a double click or double submit keeps one id.
    var seen = new WeakMap, vis = visit();

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
        for (i = 0; i < l.length && !x[role]; i++) if (l[i].value && !secret(l[i])) x[role] = l[i].value;
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
      fetch(u, { method: "POST", body: j, keepalive: j.length < 6e4 }).catch(function () {});
    }
    // path: the POST path for the marker, "" when unknown (click), null for
    // no marker (the request will not come to this origin).
    function fire(R, c, el, path) {
      if (el.closest("[data-leadproxy-ignore]")) return;
      var err = [], o = [], f = fields(c, o), x = computed(R, c, el, err), p = seen.get(c), now = Date.now(), j;
      if (!p || p.r != R.i || now - p.t > 5000) seen.set(c, p = { s: rid(), r: R.i, t: now });
      if (path != null) marker({ v: 1, r: R.i, s: p.s, a: path, c: d.characterSet, x: Object.assign({}, x), o: o });
      j = JSON.stringify({ v: 1, r: R.i, s: p.s, hp: "", page: L.href, c: d.characterSet, f: f, x: x, vis: vis, err: err });
      if (j != p.j) send(p.j = j);
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
      if (!h) return;
      // getAttribute: an input named "action" or "method" shadows the property.
      u = new URL((s && s.getAttribute("formaction")) || f.getAttribute("action") || "", d.baseURI);
      m = (s && s.getAttribute("formmethod")) || f.getAttribute("method") || "";
      fire(h[0], f, f, u.origin == L.origin && /^post$/i.test(m) ? u.pathname : null);
    }
    function onClick(e) {
      var t = e.target, h = t.closest && match(t, "c");
      if (h) fire(h[0], h[1].form || h[1].closest("form") || d, h[1], "");
    }
    function guard(fn) {
      return function (e) {
        try {
          fn(e);
        } catch (x) {}
      };
    }
    // Window capture phase: runs before the page's own handlers, even those
    // that preventDefault and send by fetch/XHR, and covers forms added later.
    w.addEventListener("submit", guard(onSubmit), true);
    w.addEventListener("click", guard(onClick), true);
    // form.submit() fires no submit event; old sites and jQuery use it.
    var P = HTMLFormElement.prototype, S = P.submit, sub = guard(onSubmit);
    P.submit = function () {
      sub({ target: this });
      return S.apply(this, arguments);
    };
  } catch (e) {}
})(window, document, location, LP_CONFIG, LP_JS);
