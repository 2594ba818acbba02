# bench/wppage.awk: a WordPress-shaped page for bench/run.sh (issue 15).
#
#   LC_ALL=C awk -v nonce=0 -f bench/wppage.awk >wp.html
#   LC_ALL=C awk -v nonce=1 -f bench/wppage.awk >wp-nonce.html
#
# What a theme + Yoast + Contact Form 7 + a page builder put out: a head of
# about 71 KB, past leadproxy's 64 KiB DefaultMaxPrefix (Yoast's meta block
# with a 13 KB JSON-LD graph, 60 <link> tags: stylesheets, preloads, icons,
# feeds, oEmbed; about 46 KB of inline CSS in <style> blocks; the emoji
# loader, jQuery, analytics), then a body with a menu, an article, a contact
# form and footer scripts: 117 KB in all.
# With nonce=1 every <script> carries nonce="NONCE_VALUE", which the upstream
# nginx replaces with its $request_id (and sends in its CSP header).
# Deterministic: no rand(), lengths in bytes under LC_ALL=C (written for
# POSIX awk; run by Debian's mawk). Sizes are targets (HEAD_CSS, JSONLD,
# TOTAL below).

function out(s) { printf "%s", s; n += length(s) }
function script(attrs) { return "<script" attrs (nonce ? " nonce=\"NONCE_VALUE\"" : "") ">" }
function link(rel, href, extra) { nlinks++; out("<link rel=\"" rel "\" href=\"" href "\"" extra " />\n") }
function css(id, size,    start, i, c, s) {
	out("<style id=\"" id "\">\n")
	start = n
	for (i = 0; n - start < size; i++) {
		c = colors[i % ncolors]
		if (i % 7 == 0) {
			s = sprintf("/* %s: block %d */\n", id, i)
		} else if (i % 5 == 0) {
			s = sprintf(".wp-block-group-%d > .wp-block-columns .wp-block-column:not(:first-child){margin-left:var(--wp--style--block-gap, %dem);padding:calc(%dpx + 1vw) %dpx}\n", i, i % 4 + 1, i % 13, i % 29)
		} else if (i % 3 == 0) {
			s = sprintf("@media (max-width:%dpx){.elementor-element-%x .elementor-widget-container{font-size:%.1frem;line-height:1.%d;color:var(--e-global-color-%s)}}\n", 480 + 64 * (i % 12), 4096 + i * 37, 0.8 + (i % 9) / 10, i % 8, c)
		} else {
			s = sprintf(".has-%s-%d-color{color:var(--wp--preset--color--%s) !important}.has-%s-%d-background-color{background-color:var(--wp--preset--color--%s) !important}.has-%s-%d-border-color{border-color:var(--wp--preset--color--%s) !important}\n", c, i, c, c, i, c, c, i, c)
		}
		if (n - start + length(s) > size) break
		out(s)
	}
	out("</style>\n")
}
BEGIN {
	HEAD_CSS = 46000
	JSONLD = 13000
	TOTAL = 120000
	ncolors = split("black cyan-bluish-gray white pale-pink vivid-red luminous-vivid-orange luminous-vivid-amber light-green-cyan vivid-green-cyan pale-cyan-blue vivid-cyan-blue vivid-purple primary secondary accent", colors, " ")
	site = "https://okna.ru"
	n = 0

	out("<!DOCTYPE html>\n<html lang=\"ru-RU\">\n<head>\n<meta charset=\"UTF-8\">\n")
	out("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	out("<meta name='robots' content='index, follow, max-image-preview:large, max-snippet:-1, max-video-preview:-1' />\n")

	# Yoast SEO's block: title, meta, and the schema graph.
	out("\n<!-- This site is optimized with the Yoast SEO plugin v22.0 - https://yoast.com/wordpress/plugins/seo/ -->\n")
	out("<title>Пластиковые окна от производителя в Москве | Окна Пример</title>\n")
	out("<meta name=\"description\" content=\"Пластиковые окна ПВХ от производителя: бесплатный замер, монтаж за один день, гарантия 10 лет. Рассчитайте стоимость онлайн.\" />\n")
	link("canonical", site "/plastikovye-okna/")
	split("og:locale=ru_RU og:type=article og:title=Пластиковые~окна~от~производителя og:description=Бесплатный~замер,~монтаж~за~один~день og:url=" site "/plastikovye-okna/ og:site_name=Окна~Пример article:publisher=https://vk.com/oknaprimer article:modified_time=2026-11-20T09:14:03+00:00 og:image=" site "/wp-content/uploads/2026/10/okna-hero.jpg og:image:width=1200 og:image:height=630 og:image:type=image/jpeg", og, " ")
	for (i = 1; i in og; i++) {
		k = og[i]; sub(/=.*/, "", k); v = og[i]; sub(/^[^=]*=/, "", v); gsub(/~/, " ", v)
		out("<meta property=\"" k "\" content=\"" v "\" />\n")
	}
	split("twitter:card=summary_large_image twitter:title=Пластиковые~окна~от~производителя twitter:description=Бесплатный~замер~и~монтаж twitter:image=" site "/wp-content/uploads/2026/10/okna-hero.jpg twitter:label1=Примерное~время~для~чтения twitter:data1=4~минуты", tw, " ")
	for (i = 1; i in tw; i++) {
		k = tw[i]; sub(/=.*/, "", k); v = tw[i]; sub(/^[^=]*=/, "", v); gsub(/~/, " ", v)
		out("<meta name=\"" k "\" content=\"" v "\" />\n")
	}
	out(script(" type=\"application/ld+json\" class=\"yoast-schema-graph\""))
	start = n
	out("{\"@context\":\"https://schema.org\",\"@graph\":[")
	out("{\"@type\":\"WebPage\",\"@id\":\"" site "/plastikovye-okna/\",\"url\":\"" site "/plastikovye-okna/\",\"name\":\"Пластиковые окна от производителя в Москве\",\"isPartOf\":{\"@id\":\"" site "/#website\"},\"primaryImageOfPage\":{\"@id\":\"" site "/plastikovye-okna/#primaryimage\"},\"datePublished\":\"2024-03-01T10:00:00+00:00\",\"dateModified\":\"2026-11-20T09:14:03+00:00\",\"breadcrumb\":{\"@id\":\"" site "/plastikovye-okna/#breadcrumb\"},\"inLanguage\":\"ru-RU\",\"potentialAction\":[{\"@type\":\"ReadAction\",\"target\":[\"" site "/plastikovye-okna/\"]}]},")
	out("{\"@type\":\"ImageObject\",\"inLanguage\":\"ru-RU\",\"@id\":\"" site "/plastikovye-okna/#primaryimage\",\"url\":\"" site "/wp-content/uploads/2026/10/okna-hero.jpg\",\"contentUrl\":\"" site "/wp-content/uploads/2026/10/okna-hero.jpg\",\"width\":1200,\"height\":630},")
	out("{\"@type\":\"BreadcrumbList\",\"@id\":\"" site "/plastikovye-okna/#breadcrumb\",\"itemListElement\":[{\"@type\":\"ListItem\",\"position\":1,\"name\":\"Главная\",\"item\":\"" site "/\"},{\"@type\":\"ListItem\",\"position\":2,\"name\":\"Пластиковые окна\"}]},")
	out("{\"@type\":\"WebSite\",\"@id\":\"" site "/#website\",\"url\":\"" site "/\",\"name\":\"Окна Пример\",\"publisher\":{\"@id\":\"" site "/#organization\"},\"potentialAction\":[{\"@type\":\"SearchAction\",\"target\":{\"@type\":\"EntryPoint\",\"urlTemplate\":\"" site "/?s={search_term_string}\"},\"query-input\":\"required name=search_term_string\"}],\"inLanguage\":\"ru-RU\"},")
	out("{\"@type\":\"Organization\",\"@id\":\"" site "/#organization\",\"name\":\"Окна Пример\",\"url\":\"" site "/\",\"logo\":{\"@type\":\"ImageObject\",\"url\":\"" site "/wp-content/uploads/logo.png\",\"width\":240,\"height\":60},\"sameAs\":[\"https://vk.com/oknaprimer\",\"https://t.me/oknaprimer\",\"https://dzen.ru/oknaprimer\"]},")
	out("{\"@type\":\"FAQPage\",\"@id\":\"" site "/plastikovye-okna/#faq\",\"mainEntity\":[")
	for (i = 1; n - start < JSONLD - 400; i++) {
		out(sprintf("%s{\"@type\":\"Question\",\"@id\":\"%s/plastikovye-okna/#faq-question-%d\",\"position\":%d,\"url\":\"%s/plastikovye-okna/#faq-question-%d\",\"name\":\"Вопрос %d: сколько стоит окно ПВХ %d×%d мм?\",\"answerCount\":1,\"acceptedAnswer\":{\"@type\":\"Answer\",\"text\":\"Окно %d×%d мм с двухкамерным стеклопакетом стоит от %d руб. с монтажом. Замер бесплатный.\",\"inLanguage\":\"ru-RU\"},\"inLanguage\":\"ru-RU\"}", i > 1 ? "," : "", site, i, i, site, i, i, 600 + 100 * i, 900 + 50 * i, 600 + 100 * i, 900 + 50 * i, 9000 + 700 * i))
	}
	out("]}]}</script>\n<!-- / Yoast SEO plugin. -->\n\n")

	# Prefetches, feeds, preloads.
	link("dns-prefetch", "//fonts.googleapis.com")
	link("dns-prefetch", "//mc.yandex.ru")
	link("dns-prefetch", "//www.googletagmanager.com")
	link("preconnect", "https://fonts.gstatic.com", " crossorigin")
	link("alternate", site "/feed/", " type=\"application/rss+xml\" title=\"Окна Пример &raquo; Лента\"")
	link("alternate", site "/comments/feed/", " type=\"application/rss+xml\" title=\"Окна Пример &raquo; Лента комментариев\"")
	link("preload", site "/wp-content/themes/astra/assets/fonts/astra.woff", " as=\"font\" type=\"font/woff\" crossorigin")
	link("preload", site "/wp-content/uploads/fonts/montserrat-v26-cyrillic-regular.woff2", " as=\"font\" type=\"font/woff2\" crossorigin")
	link("preload", site "/wp-content/uploads/fonts/montserrat-v26-cyrillic-700.woff2", " as=\"font\" type=\"font/woff2\" crossorigin")
	link("preload", site "/wp-content/uploads/2026/10/okna-hero-1024x538.webp", " as=\"image\" fetchpriority=\"high\"")

	# The emoji loader, as WordPress prints it (shortened).
	out(script("") "\nwindow._wpemojiSettings = {\"baseUrl\":\"https:\\/\\/s.w.org\\/images\\/core\\/emoji\\/15.0.3\\/72x72\\/\",\"ext\":\".png\",\"svgUrl\":\"https:\\/\\/s.w.org\\/images\\/core\\/emoji\\/15.0.3\\/svg\\/\",\"svgExt\":\".svg\",\"source\":{\"concatemoji\":\"" site "\\/wp-includes\\/js\\/wp-emoji-release.min.js?ver=6.4.3\"}};\n")
	out("/*! This file is auto-generated */\n!function(i,n){var o,s,e;function c(e){try{var t={supportTests:e,timestamp:(new Date).valueOf()};sessionStorage.setItem(o,JSON.stringify(t))}catch(e){}}function p(e,t,n){e.clearRect(0,0,e.canvas.width,e.canvas.height),e.fillText(t,0,0);var t=new Uint32Array(e.getImageData(0,0,e.canvas.width,e.canvas.height).data),r=(e.clearRect(0,0,e.canvas.width,e.canvas.height),e.fillText(n,0,0),new Uint32Array(e.getImageData(0,0,e.canvas.width,e.canvas.height).data));return t.every(function(e,t){return e===r[t]})}}((window,document),window._wpemojiSettings);\n</script>\n")
	css("wp-emoji-styles-inline-css", 600)

	# Stylesheets of the core, the theme and the plugins.
	split("wp-block-library:/wp-includes/css/dist/block-library/style.min.css?ver=6.4.3 classic-theme-styles:/wp-includes/css/classic-themes.min.css?ver=6.4.3 astra-theme-css:/wp-content/themes/astra/assets/css/minified/main.min.css?ver=4.6.4 astra-google-fonts:https://fonts.googleapis.com/css?family=Montserrat%3A400%2C700&subset=cyrillic&display=fallback contact-form-7:/wp-content/plugins/contact-form-7/includes/css/styles.css?ver=5.8.7 elementor-icons:/wp-content/plugins/elementor/assets/lib/eicons/css/elementor-icons.min.css?ver=5.27.0 elementor-frontend:/wp-content/plugins/elementor/assets/css/frontend-lite.min.css?ver=3.19.2 swiper:/wp-content/plugins/elementor/assets/lib/swiper/v8/css/swiper.min.css?ver=8.4.5 elementor-post-7:/wp-content/uploads/elementor/css/post-7.css?ver=1708000000 elementor-pro:/wp-content/plugins/elementor-pro/assets/css/frontend-lite.min.css?ver=3.19.2 elementor-global:/wp-content/uploads/elementor/css/global.css?ver=1708000000 elementor-post-42:/wp-content/uploads/elementor/css/post-42.css?ver=1708000123 font-awesome-5-all:/wp-content/plugins/elementor/assets/lib/font-awesome/css/all.min.css?ver=3.19.2 font-awesome-4-shim:/wp-content/plugins/elementor/assets/lib/font-awesome/css/v4-shims.min.css?ver=3.19.2 cookie-notice-front:/wp-content/plugins/cookie-notice/css/front.min.css?ver=2.4.16 wpforms-full:/wp-content/plugins/wpforms-lite/assets/css/frontend/classic/wpforms-full.min.css?ver=1.8.7 yith-wcwl-main:/wp-content/plugins/yith-woocommerce-wishlist/assets/css/style.css?ver=3.30.0 woocommerce-layout:/wp-content/plugins/woocommerce/assets/css/woocommerce-layout.css?ver=8.6.1 woocommerce-smallscreen:/wp-content/plugins/woocommerce/assets/css/woocommerce-smallscreen.css?ver=8.6.1 woocommerce-general:/wp-content/plugins/woocommerce/assets/css/woocommerce.css?ver=8.6.1 google-fonts-1:https://fonts.googleapis.com/css?family=Roboto%3A100%2C400%2C700&display=swap&subset=cyrillic&ver=6.4.3 elementor-icons-shared-0:/wp-content/plugins/elementor/assets/lib/font-awesome/css/fontawesome.min.css?ver=5.15.3 elementor-icons-fa-solid:/wp-content/plugins/elementor/assets/lib/font-awesome/css/solid.min.css?ver=5.15.3 elementor-icons-fa-brands:/wp-content/plugins/elementor/assets/lib/font-awesome/css/brands.min.css?ver=5.15.3 astra-addon-css:/wp-content/uploads/astra-addon/astra-addon-65d1.css?ver=4.6.3 tablepress-default:/wp-content/plugins/tablepress/css/build/default.css?ver=2.2.5 fancybox:/wp-content/plugins/easy-fancybox/fancybox/1.5.4/jquery.fancybox.min.css?ver=6.4.3 child-theme:/wp-content/themes/astra-child/style.css?ver=1.0.12", sheets, " ")
	for (i = 1; i in sheets; i++) {
		id = sheets[i]; sub(/:.*/, "", id); href = sheets[i]; sub(/^[^:]*:/, "", href)
		if (href !~ /^https:/) href = site href
		link("stylesheet", href, " id='" id "-css' media='all'")
		if (id == "classic-theme-styles") css("global-styles-inline-css", 12000)
		if (id == "astra-theme-css") css("astra-theme-css-inline-css", 26000)
	}
	out(script(" src=\"" site "/wp-includes/js/jquery/jquery.min.js?ver=3.7.1\" id=\"jquery-core-js\"") "</script>\n")
	out(script(" src=\"" site "/wp-includes/js/jquery/jquery-migrate.min.js?ver=3.4.1\" id=\"jquery-migrate-js\"") "</script>\n")

	# The REST API, EditURI, oEmbed, shortlink, icons.
	link("https://api.w.org/", site "/wp-json/")
	link("alternate", site "/wp-json/wp/v2/pages/42", " type=\"application/json\"")
	link("EditURI", site "/xmlrpc.php?rsd", " type=\"application/rsd+xml\" title=\"RSD\"")
	out("<meta name=\"generator\" content=\"WordPress 6.4.3\" />\n<meta name=\"generator\" content=\"WooCommerce 8.6.1\" />\n")
	link("shortlink", site "/?p=42")
	link("alternate", site "/wp-json/oembed/1.0/embed?url=https%3A%2F%2Fokna.ru%2Fplastikovye-okna%2F", " type=\"application/json+oembed\"")
	link("alternate", site "/wp-json/oembed/1.0/embed?url=https%3A%2F%2Fokna.ru%2Fplastikovye-okna%2F&#038;format=xml", " type=\"text/xml+oembed\"")
	link("icon", site "/wp-content/uploads/2024/03/cropped-favicon-32x32.png", " sizes=\"32x32\"")
	link("icon", site "/wp-content/uploads/2024/03/cropped-favicon-192x192.png", " sizes=\"192x192\"")
	link("apple-touch-icon", site "/wp-content/uploads/2024/03/cropped-favicon-180x180.png")
	out("<meta name=\"msapplication-TileImage\" content=\"" site "/wp-content/uploads/2024/03/cropped-favicon-270x270.png\" />\n")
	for (i = 1; nlinks < 60; i++) {
		# Language and page alternates, and the module preloads page
		# builders add, up to 60 <link> tags in all.
		if (i % 2) link("alternate", site "/" (i % 4 == 1 ? "en" : "kz") "/p-" i "/", " hreflang=\"" (i % 4 == 1 ? "en" : "kk") "\"")
		else link("modulepreload", "/wp-content/uploads/el/chunk-" i ".js")
	}
	css("wp-custom-css", HEAD_CSS - 600 - 12000 - 26000)

	# Analytics.
	out(script(" async src=\"https://www.googletagmanager.com/gtag/js?id=G-0A1B2C3D4E\"") "</script>\n")
	out(script("") "\nwindow.dataLayer = window.dataLayer || [];\nfunction gtag(){dataLayer.push(arguments);}\ngtag('js', new Date());\ngtag('config', 'G-0A1B2C3D4E');\n</script>\n")
	out("<!-- Yandex.Metrika counter -->\n" script(" type=\"text/javascript\"") "\n(function(m,e,t,r,i,k,a){m[i]=m[i]||function(){(m[i].a=m[i].a||[]).push(arguments)};m[i].l=1*new Date();for (var j = 0; j < document.scripts.length; j++) {if (document.scripts[j].src === r) { return; }}k=e.createElement(t),a=e.getElementsByTagName(t)[0],k.async=1,k.src=r,a.parentNode.insertBefore(k,a)})(window, document, \"script\", \"https://mc.yandex.ru/metrika/tag.js\", \"ym\");\nym(98765432, \"init\", {clickmap:true, trackLinks:true, accurateTrackBounce:true, webvisor:true});\n</script>\n<noscript><div><img src=\"https://mc.yandex.ru/watch/98765432\" style=\"position:absolute; left:-9999px;\" alt=\"\" /></div></noscript>\n<!-- /Yandex.Metrika counter -->\n")
	out("</head>\n\n")

	# The body: menu, article, contact form, footer.
	out("<body itemtype='https://schema.org/WebPage' itemscope='itemscope' class=\"page-template-default page page-id-42 wp-custom-logo ast-desktop ast-page-builder-template ast-no-sidebar astra-4.6.4 elementor-default elementor-kit-7 elementor-page elementor-page-42\">\n")
	out("<a class=\"skip-link screen-reader-text\" href=\"#content\">Перейти к содержимому</a>\n<div class=\"hfeed site\" id=\"page\">\n<header class=\"site-header ast-primary-submenu-animation-fade header-main-layout-1\" id=\"masthead\" itemtype=\"https://schema.org/WPHeader\" itemscope=\"itemscope\">\n<nav class=\"main-navigation\"><ul id=\"primary-menu\" class=\"main-header-menu ast-menu-shadow ast-nav-menu ast-flex\">\n")
	for (i = 1; i <= 40; i++)
		out(sprintf("<li id=\"menu-item-%d\" class=\"menu-item menu-item-type-post_type menu-item-object-page menu-item-%d\"><a href=\"%s/catalog/razdel-%d/\" class=\"menu-link\">Раздел каталога %d</a></li>\n", 100 + i, 100 + i, site, i, i))
	out("</ul></nav>\n</header>\n<div id=\"content\" class=\"site-content\"><div class=\"ast-container\"><div id=\"primary\" class=\"content-area primary\"><main id=\"main\" class=\"site-main\">\n<article class=\"post-42 page type-page status-publish ast-article-single\" id=\"post-42\" itemtype=\"https://schema.org/CreativeWork\" itemscope=\"itemscope\">\n")
	out("<div class=\"wpcf7 no-js\" id=\"wpcf7-f5-p42-o1\" lang=\"ru-RU\" dir=\"ltr\">\n<div class=\"screen-reader-response\"><p role=\"status\" aria-live=\"polite\" aria-atomic=\"true\"></p> <ul></ul></div>\n")
	out("<form id=\"contact-form\" action=\"/contact\" method=\"post\" class=\"wpcf7-form init\" aria-label=\"Контактная форма\" novalidate=\"novalidate\" data-status=\"init\">\n<div style=\"display: none;\">\n<input type=\"hidden\" name=\"_wpcf7\" value=\"5\" />\n<input type=\"hidden\" name=\"_wpcf7_version\" value=\"5.8.7\" />\n<input type=\"hidden\" name=\"_wpcf7_locale\" value=\"ru_RU\" />\n<input type=\"hidden\" name=\"_wpcf7_unit_tag\" value=\"wpcf7-f5-p42-o1\" />\n<input type=\"hidden\" name=\"_wpcf7_container_post\" value=\"42\" />\n</div>\n")
	out("<p><label> Ваше имя<br /><span class=\"wpcf7-form-control-wrap\" data-name=\"name\"><input size=\"40\" class=\"wpcf7-form-control wpcf7-text\" aria-invalid=\"false\" value=\"\" type=\"text\" name=\"name\" /></span> </label></p>\n<p><label> Телефон<br /><span class=\"wpcf7-form-control-wrap\" data-name=\"phone\"><input size=\"40\" class=\"wpcf7-form-control wpcf7-tel wpcf7-validates-as-required\" aria-required=\"true\" value=\"\" type=\"tel\" name=\"phone\" /></span> </label></p>\n<p><label> Сообщение<br /><span class=\"wpcf7-form-control-wrap\" data-name=\"message\"><textarea cols=\"40\" rows=\"10\" class=\"wpcf7-form-control wpcf7-textarea\" name=\"message\"></textarea></span> </label></p>\n<p><input class=\"wpcf7-form-control wpcf7-submit has-spinner\" type=\"submit\" value=\"Отправить\" /></p><div class=\"wpcf7-response-output\" aria-hidden=\"true\"></div>\n</form>\n</div>\n")
	for (i = 0; n < TOTAL - 4096; i++)
		out(sprintf("<div class=\"elementor-element elementor-element-%x elementor-widget elementor-widget-text-editor\" data-id=\"%x\" data-element_type=\"widget\"><div class=\"elementor-widget-container\"><p>Позиция %d: окна ПВХ, замер бесплатно, монтаж за один день, гарантия 10 лет. <a href=\"%s/p/%d/\">Подробнее</a></p></div></div>\n", 8192 + i, 8192 + i, i, site, i))
	out("</article>\n</main></div></div></div>\n<footer class=\"site-footer\" id=\"colophon\"><div class=\"ast-small-footer\">&copy; 2026 Окна Пример. Все права защищены.</div></footer>\n</div>\n")
	out(script(" id=\"contact-form-7-js-extra\"") "\nvar wpcf7 = {\"api\":{\"root\":\"https:\\/\\/okna.ru\\/wp-json\\/\",\"namespace\":\"contact-form-7\\/v1\"},\"cached\":\"1\"};\n</script>\n")
	split("swv:/wp-content/plugins/contact-form-7/includes/swv/js/index.js?ver=5.8.7 contact-form-7:/wp-content/plugins/contact-form-7/includes/js/index.js?ver=5.8.7 astra-theme-js:/wp-content/themes/astra/assets/js/minified/frontend.min.js?ver=4.6.4 elementor-webpack-runtime:/wp-content/plugins/elementor/assets/js/webpack.runtime.min.js?ver=3.19.2 elementor-frontend-modules:/wp-content/plugins/elementor/assets/js/frontend-modules.min.js?ver=3.19.2 elementor-frontend:/wp-content/plugins/elementor/assets/js/frontend.min.js?ver=3.19.2", js, " ")
	for (i = 1; i in js; i++) {
		id = js[i]; sub(/:.*/, "", id); href = js[i]; sub(/^[^:]*:/, "", href)
		out(script(" src=\"" site href "\" id=\"" id "-js\"") "</script>\n")
	}
	out("</body>\n</html>\n")
}
