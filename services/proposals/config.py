from typing import ClassVar

from shared.settings import ServiceSettings, settings_config


class ProposalsSettings(ServiceSettings):
    service_name: ClassVar[str] = "proposals"
    model_config = settings_config("PROPOSALS_")

    public_url: str = ""
    districts_file: str = ""

    def model_post_init(self, __context: object) -> None:
        super().model_post_init(__context)
        if not self.public_url:
            self.public_url = self.proposals_public_url
        self.public_url = self.public_url.rstrip("/")
