package caddymodule

import (
	"html/template"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/text/language"
)

// The dashboard speaks English and Russian: ?lang=ru|en switches (and is
// remembered in a cookie), else the browser's Accept-Language decides.
// Templates and handlers write English; t translates it.

const langCookie = "leadproxy_lang"

var (
	dashLangs   = []language.Tag{language.English, language.Russian}
	langMatcher = language.NewMatcher(dashLangs)
)

// dashLang picks the request's language ("en" or "ru") and, when ?lang=
// names one, remembers it.
func dashLang(w http.ResponseWriter, r *http.Request) string {
	if l := r.URL.Query().Get("lang"); l == "ru" || l == "en" {
		http.SetCookie(w, &http.Cookie{Name: langCookie, Value: l, Path: "/", MaxAge: 365 * 24 * 3600,
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	}
	return requestLang(r)
}

// requestLang is the request's language, without remembering it.
func requestLang(r *http.Request) string {
	if l := r.URL.Query().Get("lang"); l == "ru" || l == "en" {
		return l
	}
	if c, err := r.Cookie(langCookie); err == nil && (c.Value == "ru" || c.Value == "en") {
		return c.Value
	}
	tag, _ := language.MatchStrings(langMatcher, r.Header.Get("Accept-Language"))
	if base, _ := tag.Base(); base.String() == "ru" {
		return "ru"
	}
	return "en"
}

// tr translates an English text of the dashboard; unknown texts (data)
// stay as they are.
func tr(lang, s string) string {
	if lang == "ru" {
		if v, ok := ruText[s]; ok {
			return v
		}
	}
	return s
}

// dashFuncs are the per-request template functions: language, time zone,
// and links that keep the view while switching language.
func dashFuncs(lang string, loc *time.Location, r *http.Request) template.FuncMap {
	layout := "2006-01-02 15:04:05 MST"
	if lang == "ru" {
		layout = "02.01.2006 15:04:05 MST"
	}
	return template.FuncMap{
		"t":           func(s string) string { return tr(lang, s) },
		"statusLabel": func(s string) string { return tr(lang, statusLabel(s)) },
		"human":       func(t time.Time) string { return t.In(loc).Format(layout) },
		"lang":        func() string { return lang },
		"langLink": func(to string) string {
			q := url.Values{}
			for k, v := range r.URL.Query() {
				if k != "lang" && k != "done" {
					q[k] = v
				}
			}
			q.Set("lang", to)
			return "?" + q.Encode()
		},
	}
}

// ruText is the Russian dashboard. Status labels are the ones of the lead
// list, the no-CRM state is "Не отправлена" everywhere (skipped).
var ruText = map[string]string{
	"leads": "заявки", "Leads": "Заявки", "Report": "Отчёт", "All": "Все", "All leads": "Все заявки", "← All leads": "← Все заявки",
	"Delivered": "Доставлена", "Pending": "В очереди", "Retrying": "Повтор", "Failed": "Ошибка", "Not sent": "Не отправлена",
	"Dry run": "Пробный режим", "Would be sent to": "Было бы отправлено в",
	"Dry run: captured and checked, not sent. Below is what each destination would be sent. To send it, turn dry_run off, reload Caddy and press Retry.": "Пробный режим: заявка принята и проверена, но не отправлена. Ниже — что получила бы каждая CRM. Чтобы отправить, выключите dry_run, перезагрузите Caddy (reload) и нажмите «Отправить снова».", "Secrets are shown as ***. Ids the CRM would assign appear as example ids.": "Секреты скрыты (***). Id, которые присвоила бы CRM, показаны условными примерами.", "Still in dry run: the previews were made again and nothing was sent.": "Всё ещё пробный режим: предпросмотр обновлён, ничего не отправлено.",
	"By status": "По статусу", "In queue": "В очереди", "oldest": "самая старая",
	"Status": "Статус", "Form": "Форма", "Search": "Поиск", "any": "любой", "Filter": "Найти", "Reset": "Сбросить",
	"name, phone, email, title, comment, source, UTM": "имя, телефон, email, название, комментарий, источник, UTM",
	"Time": "Время", "Lead": "Заявка", "Contact": "Контакт", "Sent to": "Куда", "CRM deal": "Сделка в CRM", "Last error": "Последняя ошибка",
	"duplicate": "дубль", "No leads": "Заявок нет", "No leads match this filter": "Нет заявок под этот фильтр",
	"« Newest": "« Новые", "Older »": "Старые »", "Export CSV": "Выгрузить CSV", "Pages": "Страницы",
	"Retry": "Отправить снова", "Delete": "Удалить", "Delete this lead and its personal data everywhere?": "Удалить заявку и её персональные данные отовсюду?",
	"Queued for sending now.": "Поставлена в очередь на отправку.", "Lead deleted.": "Заявка удалена.",
	"Id": "Id", "Site": "Сайт", "Name": "Имя", "Phone": "Телефон", "Email": "Email", "Comment": "Комментарий", "Call back": "Перезвонить", "yes": "да",
	"Duplicate of": "Дубль заявки",
	"same contact and data inside dedup_window: kept, not sent": "тот же контакт и те же данные в пределах dedup_window: сохранена, не отправлена",
	"Same contact as": "Тот же контакт, что у",
	"other data: kept and sent as its own lead": "другие данные: сохранена и отправлена как отдельная заявка",
	"Dedup": "Дедупликация",
	"another report of this submission was merged in": "сюда объединён ещё один отчёт об этой отправке", "Submission": "Отправка формы", "Trace": "Трассировка", "Deliveries": "Доставка", "Destination": "Куда",
	"Attempts": "Попытки", "Next attempt": "Следующая попытка", "Outcome": "Итог", "Took": "Заняло",
	"Not sent: no destination": "Не отправлена: нет CRM", " (a duplicate)": " (дубль)",
	"The last 20 attempts of each destination, kept with the lead.": "Последние 20 попыток по каждой CRM хранятся вместе с заявкой.",
	"Visit": "Визит", "Visit id": "Номер визита", "Page": "Страница", "Landing": "Первая страница", "Referrer": "Откуда пришёл",
	"Source": "Источник", "Click ids": "Метки кликов", "Browser": "Браузер", "IP": "IP",
	"Extra fields": "Дополнительные поля", "CRM fields": "Поля CRM", "Submitted fields": "Поля формы",
	"Method not allowed": "Метод не поддерживается", "Use GET or POST.": "Используйте GET или POST.",
	"Starting": "Запуск", "The lead store is not open yet; reload in a moment.": "Хранилище заявок ещё не открыто; обновите страницу через минуту.",
	"Unavailable": "Недоступно", "The cluster engine (PostgreSQL) is unreachable: leads are still captured on this node; reload in a moment.": "Кластер (PostgreSQL) недоступен: заявки по-прежнему сохраняются на этом узле; обновите страницу через минуту.",
	"This page link is no longer valid.": "Эта ссылка на страницу больше не действует.",
	"Not found":                          "Не найдено", "No such lead: it may have been deleted or purged after the retention period.": "Такой заявки нет: её удалили или срок её хранения истёк.",
	"No such lead: it may have been deleted already.": "Такой заявки нет: возможно, её уже удалили.",
	"Error": "Ошибка", "The lead could not be read; see Caddy's log.": "Заявку не удалось прочитать; подробности в журнале Caddy.",
	"Forbidden": "Запрещено", "Cross-site request refused.": "Запрос с другого сайта отклонён.",
	"Bad request": "Неверный запрос", "The form could not be read.": "Не удалось прочитать форму.", "Unknown action.": "Неизвестное действие.",
	"Expired form": "Форма устарела", "The page was too old (or Caddy restarted). Go back, reload it and try again.": "Страница устарела (или Caddy перезапускался). Вернитесь, обновите её и повторите.",
	"That did not work; see Caddy's log.": "Не получилось; подробности в журнале Caddy.",
	"Where leads come from":               "Откуда заявки", "Group by": "Группировать", "From": "С", "To": "По", "Show": "Показать",
	"source": "источник", "utm_source": "utm_source", "utm_campaign": "utm_campaign", "landing": "первая страница", "form": "форма", "day": "день",
	"Visits": "Визиты", "Conversion": "Конверсия", "Total": "Итого", "Other": "Прочие", "(none)": "(нет)",
	"Visits and leads by day": "Визиты и заявки по дням", "No visits or leads in this range.": "В этом периоде нет ни визитов, ни заявок.",
	"ads": "реклама", "organic": "поиск", "social": "соцсети", "referral": "переходы с сайтов", "direct": "прямые заходы", "email": "рассылки",
	"Visits are counted from the proxy's own records: browsers that keep cookies, crawlers left out.": "Визиты считает сам прокси: браузеры с cookie, без поисковых роботов.",
}
