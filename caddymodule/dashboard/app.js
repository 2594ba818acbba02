// leadproxy dashboard: delete confirmation, filters that apply on change.
// The page works without it. Times are the server's, in the site's time
// zone (the timezone option), not the browser's.
(function () {
	"use strict";
	// Delegated: the rows a search brings in have their forms too.
	document.addEventListener("submit", function (e) {
		var f = e.target;
		if (f.matches && f.matches("form[data-confirm]") && !window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
	});
	// Search as people type: the list of the filter is fetched (the same
	// page, same origin) and its results swapped in; without this the
	// Filter button does the same.
	var q = document.querySelector("form.filters input[name=q]");
	if (q && window.fetch && window.DOMParser && window.URLSearchParams) {
		var timer, seq = 0;
		q.addEventListener("input", function () {
			clearTimeout(timer);
			timer = setTimeout(function () {
				var params = new URLSearchParams(new FormData(q.form)), url = "?" + params.toString(), mine = ++seq;
				fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; }).then(function (html) {
					if (!html || mine !== seq) return;
					var doc = new DOMParser().parseFromString(html, "text/html");
					var cur = document.getElementById("results"), next = doc.getElementById("results");
					if (!cur || !next) return;
					cur.replaceWith(document.importNode(next, true));
					var ex = document.querySelector("a.export"), nex = doc.querySelector("a.export");
					if (ex && nex) ex.setAttribute("href", nex.getAttribute("href"));
					history.replaceState(null, "", url);
				}).catch(function () {});
			}, 250);
		});
	}
	document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
		s.addEventListener("change", function () { s.form.submit(); });
	});
})();
