"""The small pages behind the links in mails. A GET only shows a page with a button (mail scanners open
links); the button POSTs the form. Texts in the person's language; everything is HTML-escaped."""

from __future__ import annotations

from jinja2 import Environment, select_autoescape

TEXTS: dict[str, dict[str, str]] = {
    "de": {
        "confirm_title": "Anmeldung bestätigen",
        "confirm_intro": "Bitte bestätigen Sie Ihre Anmeldung zum Arbeitskreis „{title}“.",
        "confirm_button": "Anmeldung bestätigen",
        "cancel_title": "Anmeldung stornieren",
        "cancel_intro": "Möchten Sie Ihre Anmeldung zum Arbeitskreis „{title}“ stornieren? Ihr Platz geht an die nächste Person auf der Warteliste.",
        "cancel_button": "Anmeldung stornieren",
        "confirmed": "Ihre Anmeldung ist bestätigt. Sie erhalten eine E-Mail mit den Terminen.",
        "waitlisted": "Alle Plätze sind vergeben. Sie stehen auf der Warteliste, Platz {position}.",
        "cancelled": "Ihre Anmeldung ist storniert.",
        "not_found": "Dieser Link ist unbekannt oder abgelaufen.",
    },
    "en": {
        "confirm_title": "Confirm your registration",
        "confirm_intro": "Please confirm your registration for the working group “{title}”.",
        "confirm_button": "Confirm registration",
        "cancel_title": "Cancel your registration",
        "cancel_intro": "Do you want to cancel your registration for the working group “{title}”? Your seat goes to the next person on the waiting list.",
        "cancel_button": "Cancel registration",
        "confirmed": "Your registration is confirmed. You will receive an e-mail with the dates.",
        "waitlisted": "All seats are taken. You are on the waiting list, position {position}.",
        "cancelled": "Your registration has been cancelled.",
        "not_found": "This link is unknown or has expired.",
    },
    "tr": {
        "confirm_title": "Kaydınızı onaylayın",
        "confirm_intro": "Lütfen “{title}” çalışma grubuna kaydınızı onaylayın.",
        "confirm_button": "Kaydı onayla",
        "cancel_title": "Kaydınızı iptal edin",
        "cancel_intro": "“{title}” çalışma grubuna kaydınızı iptal etmek istiyor musunuz? Yeriniz bekleme listesindeki bir sonraki kişiye verilir.",
        "cancel_button": "Kaydı iptal et",
        "confirmed": "Kaydınız onaylandı. Tarihleri içeren bir e-posta alacaksınız.",
        "waitlisted": "Tüm yerler dolu. Bekleme listesindesiniz, sıra {position}.",
        "cancelled": "Kaydınız iptal edildi.",
        "not_found": "Bu bağlantı bilinmiyor veya süresi dolmuş.",
    },
    "ru": {
        "confirm_title": "Подтвердите регистрацию",
        "confirm_intro": "Пожалуйста, подтвердите вашу регистрацию в рабочей группе «{title}».",
        "confirm_button": "Подтвердить регистрацию",
        "cancel_title": "Отменить регистрацию",
        "cancel_intro": "Вы хотите отменить регистрацию в рабочей группе «{title}»? Ваше место получит следующий человек из списка ожидания.",
        "cancel_button": "Отменить регистрацию",
        "confirmed": "Ваша регистрация подтверждена. Вы получите письмо с датами встреч.",
        "waitlisted": "Все места заняты. Вы в списке ожидания, место {position}.",
        "cancelled": "Ваша регистрация отменена.",
        "not_found": "Эта ссылка неизвестна или устарела.",
    },
    "ar": {
        "confirm_title": "تأكيد التسجيل",
        "confirm_intro": "يرجى تأكيد تسجيلك في مجموعة العمل «{title}».",
        "confirm_button": "تأكيد التسجيل",
        "cancel_title": "إلغاء التسجيل",
        "cancel_intro": "هل تريد إلغاء تسجيلك في مجموعة العمل «{title}»؟ سيذهب مقعدك إلى الشخص التالي في قائمة الانتظار.",
        "cancel_button": "إلغاء التسجيل",
        "confirmed": "تم تأكيد تسجيلك. ستصلك رسالة بالبريد الإلكتروني تتضمن المواعيد.",
        "waitlisted": "جميع المقاعد محجوزة. أنت في قائمة الانتظار، المركز {position}.",
        "cancelled": "تم إلغاء تسجيلك.",
        "not_found": "هذا الرابط غير معروف أو منتهي الصلاحية.",
    },
    "uk": {
        "confirm_title": "Підтвердіть реєстрацію",
        "confirm_intro": "Будь ласка, підтвердіть вашу реєстрацію в робочій групі «{title}».",
        "confirm_button": "Підтвердити реєстрацію",
        "cancel_title": "Скасувати реєстрацію",
        "cancel_intro": "Ви хочете скасувати реєстрацію в робочій групі «{title}»? Ваше місце отримає наступна людина зі списку очікування.",
        "cancel_button": "Скасувати реєстрацію",
        "confirmed": "Вашу реєстрацію підтверджено. Ви отримаєте лист із датами зустрічей.",
        "waitlisted": "Усі місця зайняті. Ви в списку очікування, місце {position}.",
        "cancelled": "Вашу реєстрацію скасовано.",
        "not_found": "Це посилання невідоме або застаріле.",
    },
}

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_PAGE = _env.from_string(
    """<!DOCTYPE html>
<html lang="{{ lang }}" dir="{{ 'rtl' if lang == 'ar' else 'ltr' }}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{ title }}</title></head>
<body style="font-family: Arial, Helvetica, sans-serif; max-width: 36em; margin: 2em auto; padding: 0 1em;">
<h1>{{ title }}</h1>
<p>{{ message }}</p>
{% if action %}
<form method="post" action="{{ action }}">
<input type="hidden" name="token" value="{{ token }}">
<button type="submit" style="font-size: 1.1em; padding: 0.6em 1.2em;">{{ button }}</button>
</form>
{% endif %}
</body></html>"""
)


def texts(language: str) -> dict[str, str]:
    return TEXTS.get(language, TEXTS["de"])


def action_page(language: str, kind: str, working_group_title: str, action: str, token: str) -> str:
    t = texts(language)
    return _PAGE.render(
        lang=language if language in TEXTS else "de",
        title=t[f"{kind}_title"],
        message=t[f"{kind}_intro"].format(title=working_group_title),
        button=t[f"{kind}_button"],
        action=action,
        token=token,
    )


def result_page(language: str, state: dict) -> str:
    t = texts(language)
    status = state.get("status", "")
    message = t.get(status, "").format(position=state.get("waitlist_position", ""))
    return _PAGE.render(
        lang=language if language in TEXTS else "de", title=t["confirm_title"], message=message
    )


def not_found_page(language: str = "de") -> str:
    t = texts(language)
    return _PAGE.render(
        lang=language if language in TEXTS else "de", title=t["confirm_title"], message=t["not_found"]
    )


# --- erasure on request (Art. 17) -----------------------------------------------------------------------

ERASURE_TEXTS: dict[str, dict[str, str]] = {
    "de": {
        "title": "Ihre Daten löschen",
        "intro": "Möchten Sie, dass wir alle Daten zu Ihrer E-Mail-Adresse löschen? Anmeldungen zu Arbeitskreisen werden dann storniert; Ihre Vorschläge bleiben ohne Ihren Namen erhalten.",
        "button": "Daten jetzt löschen",
        "started": "Wir löschen Ihre Daten. Sobald alles gelöscht ist, erhalten Sie eine letzte E-Mail.",
    },
    "en": {
        "title": "Delete your data",
        "intro": "Do you want us to delete all data about your e-mail address? Registrations for working groups will be cancelled; your proposals stay, without your name.",
        "button": "Delete my data now",
        "started": "We are deleting your data. When everything is deleted, you will receive one last e-mail.",
    },
    "tr": {
        "title": "Verilerinizi silin",
        "intro": "E-posta adresinizle ilgili tüm verileri silmemizi istiyor musunuz? Çalışma gruplarına kayıtlarınız iptal edilir; önerileriniz adınız olmadan kalır.",
        "button": "Verilerimi şimdi sil",
        "started": "Verilerinizi siliyoruz. Her şey silindiğinde son bir e-posta alacaksınız.",
    },
    "ru": {
        "title": "Удалить ваши данные",
        "intro": "Вы хотите, чтобы мы удалили все данные, связанные с вашим адресом электронной почты? Регистрации в рабочих группах будут отменены; ваши предложения останутся без вашего имени.",
        "button": "Удалить мои данные",
        "started": "Мы удаляем ваши данные. Когда всё будет удалено, вы получите последнее письмо.",
    },
    "ar": {
        "title": "حذف بياناتك",
        "intro": "هل تريد منا حذف جميع البيانات المتعلقة بعنوان بريدك الإلكتروني؟ سيتم إلغاء تسجيلاتك في مجموعات العمل، وتبقى مقترحاتك بدون اسمك.",
        "button": "احذف بياناتي الآن",
        "started": "نحن نحذف بياناتك. عند حذف كل شيء ستصلك رسالة أخيرة بالبريد الإلكتروني.",
    },
    "uk": {
        "title": "Видалити ваші дані",
        "intro": "Ви хочете, щоб ми видалили всі дані, пов’язані з вашою адресою електронної пошти? Реєстрації в робочих групах буде скасовано; ваші пропозиції залишаться без вашого імені.",
        "button": "Видалити мої дані",
        "started": "Ми видаляємо ваші дані. Коли все буде видалено, ви отримаєте останній лист.",
    },
}


def _erasure_texts(language: str) -> tuple[str, dict[str, str]]:
    lang = language if language in ERASURE_TEXTS else "de"
    return lang, ERASURE_TEXTS[lang]


def erasure_page(language: str, action: str, token: str) -> str:
    lang, t = _erasure_texts(language)
    return _PAGE.render(
        lang=lang, title=t["title"], message=t["intro"], button=t["button"], action=action, token=token
    )


def erasure_started_page(language: str) -> str:
    lang, t = _erasure_texts(language)
    return _PAGE.render(lang=lang, title=t["title"], message=t["started"])
