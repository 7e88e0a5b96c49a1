"""Given names and family names for generated profiles, from many languages.

A population draws its names without replacement from (given name x family name) per gender, so
the sizes here bound how many agents of one gender have distinct names (about 55,000).
Family names are one word each (a profile's name is split on its last space).
"""

from __future__ import annotations

__all__ = ["FAMILY", "FEMALE", "MALE"]


def _words(text: str) -> tuple[str, ...]:
    words = tuple(text.split())
    assert len(set(words)) == len(words), "a name is listed twice"
    return words


FEMALE = _words(
    """
    Emma Olivia Charlotte Amelia Grace Chloe Hannah Lily Ruby Zoe Abigail Madison Harper Evelyn
    Sophie Claire Camille Manon Juliette Elodie Margaux Ines Lea Louise
    Anna Lena Marie Johanna Greta Frieda Clara Mia Lina Katharina
    Ingrid Astrid Freya Sigrid Maja Elin Saga Linnea Annika Liv
    Sofia Lucia Isabel Carmen Elena Marta Paula Valentina Camila Gabriela Daniela Mariana Ximena
    Giulia Chiara Francesca Alessia Beatrice Martina Aurora
    Olga Natalia Irina Svetlana Anastasia Tatiana Katarzyna Agnieszka Zuzana Petra Milena Jelena
    Eleni Dimitra Katerina
    Fatima Aisha Leila Noor Yasmin Zainab Mariam Amira Layla Salma Huda Rania Dalia
    Zeynep Elif Ayse Defne Ece
    Tamar Noa Shira Yael Talia
    Priya Ananya Kavya Diya Isha Meera Lakshmi Pooja Sunita Shreya Nandini Aditi
    Mei Jing Xiu Ling Yan Hui Fang Xia Yun
    Aiko Hana Yuki Sakura Haruka Yui Emi Naoko
    Minji Jiwoo Seoyeon Soojin Hyejin
    Linh Thu Mai Lan
    Siti Putri Dewi Ayu
    Amara Nia Chiamaka Ngozi Adaeze Abena Akosua Wanjiru Zawadi Thandiwe Nomvula Amina Halima Ayana
    Kalani Leilani Aroha Mere
    Ayasha Aiyana Nayeli Itzel
    Siobhan Aoife Niamh Mairead Ciara
    """
)
MALE = _words(
    """
    James Oliver William Henry Jack Noah Samuel Daniel David Benjamin Thomas Ethan Lucas Owen
    Louis Hugo Jules Arthur Antoine Mathis Theo Raphael Gabriel Baptiste
    Felix Jonas Lukas Paul Maximilian Leon Moritz Finn Tobias Matthias
    Erik Lars Nils Anders Magnus Olav Sven Henrik Axel Emil
    Carlos Javier Pablo Diego Alejandro Mateo Santiago Andres Miguel Rafael Joaquin Emiliano Tomas
    Luca Marco Giovanni Lorenzo Matteo Alessandro Riccardo
    Ivan Dmitri Sergei Alexei Mikhail Nikolai Piotr Tomasz Jakub Ondrej Marek Stefan Milos
    Giorgos Nikos Yannis
    Ahmed Mohammed Omar Yusuf Tariq Karim Hassan Khalid Rami Samir Bilal Ibrahim Malik
    Emre Mehmet Burak Kerem Can
    Eitan Yonatan Ariel Noam Avi
    Arjun Raj Rahul Vikram Rohan Aarav Vivek Sanjay Anil Karan Nikhil Aditya
    Wei Jun Hao Lei Ming Tao Bo Qiang Yong
    Hiroshi Kenji Takashi Haruto Ren Sota Daiki Kaito
    Minjun Jihoon Seojun Hyunwoo Dongha
    Minh Duc Huy Khanh
    Budi Agus Rizky Bayu
    Kwame Kofi Chinedu Emeka Obinna Sipho Thabo Juma Baraka Tendai Musa Kato Jabari Oluwaseun
    Keoni Kai Tane Rawiri
    Takoda Ahanu Tupac Cuauhtemoc
    Liam Cian Oisin Declan Padraig
    """
)
FAMILY = _words(
    """
    Smith Johnson Brown Taylor Wilson Evans Walker Wright Thompson Clarke Hughes Roberts Baker
    Mitchell Turner Campbell Stewart Murray Kennedy Harper Fletcher
    Murphy Kelly Byrne Ryan Walsh Gallagher Doyle Quinn
    Dubois Moreau Laurent Lefebvre Fournier Girard Bonnet Mercier Rousseau Blanc Garnier Faure
    Muller Schmidt Schneider Fischer Weber Wagner Becker Hoffmann Richter Koch Wolf Neumann Braun
    Bauer Zimmermann Hartmann
    Jansen Visser Bakker Smit Mulder Peeters Maes Willems
    Andersson Johansson Nilsson Larsson Lindqvist Berg Hansen Jensen Nielsen Olsen Haugen Virtanen
    Korhonen Makinen
    Garcia Fernandez Lopez Martinez Sanchez Perez Gomez Ruiz Moreno Jimenez Navarro Castillo
    Morales Ortiz Herrera Vargas Rojas Medina Mendoza Guerrero Flores Ramirez Torres Cruz Reyes
    Silva Santos Costa Oliveira Pereira Ferreira Almeida Carvalho Ribeiro Gomes Rocha Barbosa
    Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti
    Ivanov Petrov Smirnov Volkov Sokolov Popov Kuznetsov Morozov Pavlov Kowalski Nowak Wisniewski
    Wojcik Kaminski Novak Horvat Kovac Dvorak Popescu Ionescu Nagy Szabo Toth Petrovic Jovanovic
    Papadopoulos Georgiou Nikolaidis Dimitriou
    Haddad Khoury Nasser Saleh Mansour Hamdan Aziz Rahman Hussein Karimi Hosseini Rahimi Farouk
    Abbas Qureshi Siddiqui Chaudhry Malik Sheikh Ansari
    Yilmaz Kaya Demir Sahin Celik Aydin Ozturk Arslan Dogan Koc
    Cohen Levi Mizrahi Peretz Friedman Katz
    Patel Sharma Singh Kumar Gupta Reddy Iyer Nair Rao Mehta Joshi Desai Banerjee Chatterjee Menon
    Pillai Kapoor Verma Bose Das Kaur Shah
    Wang Li Zhang Liu Chen Yang Huang Zhao Zhou Wu Xu Sun Ma Zhu Hu Guo Lin He Gao Luo
    Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato Yoshida Yamada
    Sasaki Matsumoto Inoue Kimura Abe Mori
    Kim Lee Park Choi Jung Kang Cho Yoon Jang Lim Han Shin
    Nguyen Tran Le Pham Hoang Phan Vu Dang Bui Do
    Santoso Wijaya Hidayat Kusuma Setiawan Tan Ong Goh
    Okafor Adeyemi Okonkwo Eze Nwosu Balogun Adebayo Mensah Asante Owusu Boateng Osei Kamau
    Mwangi Otieno Odhiambo Njoroge Kariuki Dlamini Nkosi Ndlovu Khumalo Mokoena Banda Phiri
    Diallo Traore Toure Keita Haile Tesfaye Bekele
    Kahale Akana Ngata Parata
    Begay Yazzie Tsosie Quispe Mamani Huaman
    """
)
